//! DNS messages, as far as a node's cluster resolver needs them (RFC 1035): a query is read
//! (header and its one question; anything else is a format error), and an answer is written
//! for names in the cluster's domain; an upstream's response to a relayed query is read for its
//! A records (DNS-name egress rules allow the addresses names resolved to). Queries come from
//! pods and responses from outside, so this reads untrusted input and has a fuzz target
//! (`fuzz/fuzz_targets/dns.rs`).

use std::net::Ipv4Addr;

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Class IN.
pub const CLASS_IN: u16 = 1;

/// Response codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    /// No error (with or without answers).
    NoError = 0,
    /// The query could not be read.
    FormErr = 1,
    /// The resolver failed (no upstream answered).
    ServFail = 2,
    /// The name does not exist.
    NxDomain = 3,
    /// Not a kind of query this resolver answers.
    NotImp = 4,
    /// Refused (a name outside the cluster with no upstream to ask).
    Refused = 5,
}

/// A query's question, its name lowercased without the final dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The message id.
    pub id: u16,
    /// Recursion desired (copied into the answer).
    pub recursion_desired: bool,
    /// The name asked for, e.g. `web.shop.svc.cluster.local`.
    pub name: String,
    /// The record type.
    pub qtype: u16,
    /// The class.
    pub qclass: u16,
    /// The question as it was on the wire (echoed in the answer).
    question: Vec<u8>,
}

/// Why a message is not a query this resolver reads.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Shorter than a header; there is nothing to answer.
    #[error("a DNS message is at least 12 bytes, this one is {0}")]
    TooShort(usize),
    /// A header, but not a readable standard query; answer with `rcode`.
    #[error("{reason}")]
    Unanswerable {
        /// The id to answer with.
        id: u16,
        /// The code to answer with.
        rcode: Rcode,
        /// What was wrong.
        reason: String,
    },
}

fn unanswerable(id: u16, rcode: Rcode, reason: impl Into<String>) -> DnsError {
    DnsError::Unanswerable { id, rcode, reason: reason.into() }
}

/// Reads a query: exactly one question, no answers, an uncompressed name.
pub fn parse_query(message: &[u8]) -> Result<Query, DnsError> {
    if message.len() < 12 {
        return Err(DnsError::TooShort(message.len()));
    }
    let word = |at: usize| u16::from_be_bytes([message[at], message[at + 1]]);
    let id = word(0);
    let flags = word(2);
    if flags & 0x8000 != 0 {
        return Err(unanswerable(id, Rcode::FormErr, "a response, not a query"));
    }
    let opcode = (flags >> 11) & 0xf;
    if opcode != 0 {
        return Err(unanswerable(id, Rcode::NotImp, format!("opcode {opcode} is not a standard query")));
    }
    let (qdcount, ancount, nscount) = (word(4), word(6), word(8));
    if qdcount != 1 || ancount != 0 || nscount != 0 {
        return Err(unanswerable(id, Rcode::FormErr, format!("{qdcount} questions and {ancount} answers; a query has one question")));
    }
    let mut at = 12;
    let mut labels: Vec<String> = Vec::new();
    let mut length = 0usize;
    loop {
        let Some(&len) = message.get(at) else { return Err(unanswerable(id, Rcode::FormErr, "the question's name runs past the message")) };
        at += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return Err(unanswerable(id, Rcode::FormErr, "a compressed or extended label in a question"));
        }
        let end = at + usize::from(len);
        let Some(label) = message.get(at..end) else { return Err(unanswerable(id, Rcode::FormErr, "a label runs past the message")) };
        length += usize::from(len) + 1;
        if length > 255 {
            return Err(unanswerable(id, Rcode::FormErr, "the name is longer than 255 bytes"));
        }
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at = end;
    }
    let Some(tail) = message.get(at..at + 4) else { return Err(unanswerable(id, Rcode::FormErr, "the question has no type and class")) };
    let (qtype, qclass) = (u16::from_be_bytes([tail[0], tail[1]]), u16::from_be_bytes([tail[2], tail[3]]));
    Ok(Query { id, recursion_desired: flags & 0x0100 != 0, name: labels.join("."), qtype, qclass, question: message[12..at + 4].to_vec() })
}

/// An answer to `query`: `addresses` as A records with `ttl` seconds (when it asked for A),
/// authoritative, with `rcode`.
pub fn answer(query: &Query, rcode: Rcode, addresses: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let records: &[Ipv4Addr] = if rcode == Rcode::NoError && query.qtype == TYPE_A && query.qclass == CLASS_IN { addresses } else { &[] };
    let mut out = Vec::with_capacity(12 + query.question.len() + records.len() * 16);
    out.extend_from_slice(&query.id.to_be_bytes());
    // QR, AA, RD as asked, RA: the resolver recurses for names outside the cluster.
    let flags: u16 = 0x8000 | 0x0400 | if query.recursion_desired { 0x0100 } else { 0 } | 0x0080 | rcode as u16;
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&query.question);
    for addr in records {
        // The name: a pointer to the question's, at offset 12.
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&addr.octets());
    }
    out
}

/// What a response said a name resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The name asked for, lowercased without the final dot.
    pub name: String,
    /// The addresses of the A records among the answers (a CNAME's target's included).
    pub addresses: Vec<Ipv4Addr>,
    /// The smallest TTL of those records, in seconds.
    pub ttl: u32,
}

/// Reads a response's question and the A records of its answers; `None` for a message that is
/// no readable response with one question.
pub fn parse_response(message: &[u8]) -> Option<Resolved> {
    let word = |at: usize| Some(u16::from_be_bytes([*message.get(at)?, *message.get(at + 1)?]));
    if word(2)? & 0x8000 == 0 || word(4)? != 1 {
        return None;
    }
    let answers = word(6)?;
    // The question is a query's, as a response echoes it.
    let mut question = message.get(..12)?.to_vec();
    question[2] &= 0x7f;
    question[6..12].fill(0);
    let end = question_end(message)?;
    question.extend_from_slice(message.get(12..end)?);
    let name = parse_query(&question).ok()?.name;
    let mut at = end;
    let (mut addresses, mut ttl) = (Vec::new(), u32::MAX);
    for _ in 0..answers {
        at = skip_name(message, at)?;
        let (rtype, class) = (word(at)?, word(at + 2)?);
        let record_ttl = u32::from_be_bytes(message.get(at + 4..at + 8)?.try_into().ok()?);
        let length = usize::from(word(at + 8)?);
        let data = message.get(at + 10..at + 10 + length)?;
        if rtype == TYPE_A && class == CLASS_IN && length == 4 {
            addresses.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
            ttl = ttl.min(record_ttl);
        }
        at += 10 + length;
    }
    Some(Resolved { name, addresses, ttl: if ttl == u32::MAX { 0 } else { ttl } })
}

/// Where the question of a message (its name, type and class from offset 12) ends.
fn question_end(message: &[u8]) -> Option<usize> {
    let at = skip_name(message, 12)?;
    (message.len() >= at + 4).then_some(at + 4)
}

/// Where the name at `at` ends: after its final empty label, or after a compression pointer.
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *message.get(at)?;
        match len & 0xc0 {
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(len),
            0xc0 => return message.get(at + 1).map(|_| at + 2),
            _ => return None,
        }
    }
}

/// The answer to a message that has a header but is not a query this reads.
pub fn error_answer(id: u16, rcode: Rcode) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(0x8000u16 | rcode as u16).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out
}

/// For the fuzz target and the corpus test: reads `data` as a query and answers it, checking
/// that the answer reads back as a response to the same question.
#[doc(hidden)]
pub fn fuzz_query(data: &[u8]) {
    match parse_query(data) {
        Ok(query) => {
            let _ = query.to_string_lossy();
            let reply = answer(&query, Rcode::NoError, &[Ipv4Addr::new(10, 96, 0, 1)], 5);
            assert_eq!(&reply[..2], &data[..2], "the answer carries the query's id");
            let mut as_query = reply.clone();
            as_query[2] &= 0x7f;
            as_query[6..8].copy_from_slice(&[0, 0]);
            as_query.truncate(12 + query.question.len());
            let again = parse_query(&as_query).expect("an answer's question reads back");
            assert_eq!((again.name, again.qtype), (query.name.clone(), query.qtype));
            let resolved = parse_response(&reply).expect("an answer reads back as a response");
            let expected: &[Ipv4Addr] = if query.qtype == TYPE_A && query.qclass == CLASS_IN { &[Ipv4Addr::new(10, 96, 0, 1)] } else { &[] };
            assert_eq!((resolved.name, resolved.addresses.as_slice()), (query.name, expected));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Some(resolved) = parse_response(data) {
        assert!(resolved.addresses.len() <= data.len() / 14, "every address is a record of the message");
    }
}

impl Query {
    fn to_string_lossy(&self) -> String {
        format!("{} type {} class {}", self.name, self.qtype, self.qclass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m
    }

    #[test]
    fn a_query_reads_and_its_answer_carries_the_addresses() {
        let q = parse_query(&query("Web.Shop.svc.cluster.local", TYPE_A)).unwrap();
        assert_eq!((q.id, q.name.as_str(), q.qtype, q.recursion_desired), (0x1234, "web.shop.svc.cluster.local", TYPE_A, true));
        let reply = answer(&q, Rcode::NoError, &[Ipv4Addr::new(10, 96, 0, 7), Ipv4Addr::new(10, 96, 0, 8)], 5);
        assert_eq!(&reply[..2], &[0x12, 0x34]);
        assert_eq!(reply[3] & 0xf, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([reply[6], reply[7]]), 2, "two answers");
        assert_eq!(&reply[reply.len() - 4..], &[10, 96, 0, 8]);
        let nx = answer(&q, Rcode::NxDomain, &[], 5);
        assert_eq!((nx[3] & 0xf, u16::from_be_bytes([nx[6], nx[7]])), (3, 0));
        let aaaa = parse_query(&query("web.shop.svc.cluster.local", 28)).unwrap();
        assert_eq!(u16::from_be_bytes(answer(&aaaa, Rcode::NoError, &[Ipv4Addr::LOCALHOST], 5)[6..8].try_into().unwrap()), 0, "no A records for AAAA");
    }

    #[test]
    fn a_response_gives_its_names_addresses_with_the_smallest_ttl() {
        let q = parse_query(&query("Api.Example.test", TYPE_A)).unwrap();
        let mut reply = answer(&q, Rcode::NoError, &[Ipv4Addr::new(198, 18, 77, 10), Ipv4Addr::new(198, 18, 77, 11)], 300);
        // A CNAME record first (its data a name), then the A records, one with a smaller TTL.
        let cname = [&[0xc0, 12][..], &5u16.to_be_bytes(), &CLASS_IN.to_be_bytes(), &60u32.to_be_bytes(), &4u16.to_be_bytes(), &[2, b'x', b'y', 0]].concat();
        let question_end = 12 + q.question.len();
        reply.splice(question_end..question_end, cname);
        reply[7] = 3;
        let at = reply.len() - 10;
        reply[at..at + 4].copy_from_slice(&30u32.to_be_bytes());
        let resolved = parse_response(&reply).unwrap();
        assert_eq!(resolved.name, "api.example.test");
        assert_eq!(resolved.addresses, [Ipv4Addr::new(198, 18, 77, 10), Ipv4Addr::new(198, 18, 77, 11)]);
        assert_eq!(resolved.ttl, 30, "the smallest A record TTL; the CNAME's is not an address's");
        assert_eq!(parse_response(&query("a.b", TYPE_A)), None, "a query is no response");
        assert_eq!(parse_response(&reply[..reply.len() - 3]), None, "a record cut short");
        let nx = parse_response(&answer(&q, Rcode::NxDomain, &[], 5)).unwrap();
        assert!(nx.addresses.is_empty());
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        assert_eq!(parse_query(&[0; 5]), Err(DnsError::TooShort(5)));
        let mut compressed = query("a.b", TYPE_A);
        compressed[12] = 0xc0;
        assert!(parse_query(&compressed).unwrap_err().to_string().contains("compressed"));
        let mut two = query("a.b", TYPE_A);
        two[5] = 2;
        assert!(matches!(parse_query(&two), Err(DnsError::Unanswerable { rcode: Rcode::FormErr, .. })));
        let truncated = &query("a.b", TYPE_A)[..16];
        assert!(parse_query(truncated).unwrap_err().to_string().contains("runs past"));
        let mut response = query("a.b", TYPE_A);
        response[2] |= 0x80;
        assert!(parse_query(&response).unwrap_err().to_string().contains("a response"));
        let long = query(&vec!["a".repeat(63); 5].join("."), TYPE_A);
        assert!(parse_query(&long).unwrap_err().to_string().contains("255"));
    }
}
