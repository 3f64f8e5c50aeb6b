//! A DNS responder standing in for the corpus's `coredns` backend: its Corefile answers the
//! `foo.bar.com` zone with the `whoami` plugin (an A or AAAA record holding the client's
//! address) and forwards everything else upstream, which an offline replay cannot reach, so
//! other names get SERVFAIL.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;

use crate::{Shared, net};

/// The zone answered by `whoami`.
const ZONE: &str = "foo.bar.com";
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u8 = 1;
const RCODE_SERVFAIL: u8 = 2;

pub(crate) async fn serve(socket: UdpSocket, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let mut buf = vec![0u8; 4096];
    loop {
        let received = tokio::select! {
            () = net::wait_shutdown(&mut shutdown) => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let Ok((n, peer)) = received else {
            continue;
        };
        let Some(reply) = answer(buf.get(..n).unwrap_or_default(), peer) else {
            continue;
        };
        shared.log.push(format!("Received DNS query from {peer}"));
        let _ = socket.send_to(&reply, peer).await;
    }
}

/// The reply to one query, or `None` for what is not a DNS query at all.
pub(crate) fn answer(query: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    if flags & 0x8000 != 0 {
        return None; // a response, not a query
    }
    let mut reply = Vec::with_capacity(64);
    reply.extend_from_slice(&header[..2]);
    // QR=1, opcode copied, AA=1, RD copied.
    let opcode_rd = flags & 0x7900;
    let reply_flags = |rcode: u8| (0x8400 | opcode_rd | u16::from(rcode)).to_be_bytes();
    let qdcount = u16::from_be_bytes([header[4], header[5]]);
    let Some((name, qtype, qclass, end)) = (qdcount == 1).then(|| question(query)).flatten() else {
        reply.extend_from_slice(&reply_flags(RCODE_FORMERR));
        reply.extend_from_slice(&[0; 8]);
        return Some(reply);
    };
    let question_bytes = query.get(12..end)?;
    let lower = name.to_ascii_lowercase();
    let in_zone = lower == ZONE || lower.ends_with(&format!(".{ZONE}"));
    let record = match (qtype, qclass, peer.ip()) {
        (TYPE_A, CLASS_IN, IpAddr::V4(ip)) => Some((TYPE_A, ip.octets().to_vec())),
        (TYPE_AAAA, CLASS_IN, IpAddr::V6(ip)) => Some((TYPE_AAAA, ip.octets().to_vec())),
        _ => None,
    };
    let rcode = if in_zone { 0 } else { RCODE_SERVFAIL };
    let answers = u16::from(in_zone && record.is_some());
    reply.extend_from_slice(&reply_flags(rcode));
    reply.extend_from_slice(&1u16.to_be_bytes());
    reply.extend_from_slice(&answers.to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(question_bytes);
    if let (true, Some((rtype, rdata))) = (in_zone, record) {
        reply.extend_from_slice(&[0xc0, 0x0c]); // the name of the question
        reply.extend_from_slice(&rtype.to_be_bytes());
        reply.extend_from_slice(&CLASS_IN.to_be_bytes());
        reply.extend_from_slice(&0u32.to_be_bytes()); // TTL 0, as whoami
        reply.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
        reply.extend_from_slice(&rdata);
    }
    Some(reply)
}

/// The single question: name, type, class and the offset just past it.
fn question(msg: &[u8]) -> Option<(String, u16, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression pointers are not allowed in a question
        }
        labels.push(String::from_utf8_lossy(msg.get(at..at + len)?).into_owned());
        at += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]);
    let qclass = u16::from_be_bytes([*msg.get(at + 2)?, *msg.get(at + 3)?]);
    Some((labels.join("."), qtype, qclass, at + 4))
}

/// A query for `name` (type A, recursion desired) with `id`.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(u8::try_from(label.len()).unwrap_or(63).min(63));
        q.extend_from_slice(
            label
                .as_bytes()
                .get(..label.len().min(63))
                .unwrap_or_default(),
        );
    }
    q.push(0);
    q.extend_from_slice(&TYPE_A.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

/// What a reply says: `(id, rcode, answer count)`, or `None` if it is not a DNS response.
pub fn parse_reply(reply: &[u8]) -> Option<(u16, u8, u16)> {
    let h = reply.get(..12)?;
    let flags = u16::from_be_bytes([h[2], h[3]]);
    (flags & 0x8000 != 0).then(|| {
        (
            u16::from_be_bytes([h[0], h[1]]),
            (flags & 0x000f) as u8,
            u16::from_be_bytes([h[6], h[7]]),
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn whoami_answers_the_zone_with_the_client_address() {
        let peer: SocketAddr = "127.0.0.9:5353".parse().unwrap();
        let reply = answer(&query(0x1234, "foo.bar.com."), peer).unwrap();
        assert_eq!(parse_reply(&reply), Some((0x1234, 0, 1)));
        assert_eq!(&reply[reply.len() - 4..], &[127, 0, 0, 9]);
        // Outside the zone, the offline forwarder fails.
        let reply = answer(&query(7, "github.com"), peer).unwrap();
        assert_eq!(parse_reply(&reply), Some((7, RCODE_SERVFAIL, 0)));
        // Garbage is ignored; a truncated question is FORMERR.
        assert!(answer(b"hello", peer).is_none());
        let mut truncated = query(9, "foo.bar.com");
        truncated.truncate(15);
        assert_eq!(
            parse_reply(&answer(&truncated, peer).unwrap()),
            Some((9, RCODE_FORMERR, 0))
        );
    }
}
