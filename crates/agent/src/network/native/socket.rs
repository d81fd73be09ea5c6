//! One `NETLINK_ROUTE` socket and the requests sent on it: each batch of requests is one
//! datagram, and the answers are matched to their requests by sequence number.

use std::io;

use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK_TLVS, NLM_F_CAPPED,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::network::NetworkError;

/// Room for one datagram of replies; the kernel's dump chunks stay well under it.
const RECV_BUFFER: usize = 64 * 1024;

/// The extended-ack attribute holding the kernel's reason for an error (`NLMSGERR_ATTR_MSG`).
const NLMSGERR_ATTR_MSG: u16 = 1;

/// The length of a netlink message header (`struct nlmsghdr`).
const NLMSG_HEADER_LEN: usize = 16;

/// One request: the message, its flags besides `NLM_F_REQUEST`, and what it does, in words,
/// for errors ("set link eth0 up").
pub(super) struct Request {
    /// The message.
    pub message: RouteNetlinkMessage,
    /// `NLM_F_ACK` for a single change or lookup, `NLM_F_DUMP` for a listing, and so on.
    pub flags: u16,
    /// What the request does, naming its link or address.
    pub what: String,
}

/// The payloads (without the netlink header) of the messages that answered one request: one
/// for a lookup, any number for a dump, none for a change.
pub(super) type Replies = Vec<Vec<u8>>;

/// A `NETLINK_ROUTE` socket; it acts on the network namespace it was opened in, whatever
/// namespace the thread using it is in later.
pub(super) struct RouteSocket {
    socket: Socket,
    /// The namespace, for errors: "host" or the name.
    netns: String,
    next_sequence: u32,
    buffer: Vec<u8>,
}

impl RouteSocket {
    /// Opens a socket in the calling thread's network namespace, which `netns` names for errors.
    pub fn open(netns: &str) -> Result<Self, NetworkError> {
        let fail = |source| netlink_error("open a NETLINK_ROUTE socket", netns, source, None);
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind_auto().map_err(fail)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
        // An error then carries the kernel's reason ("Nexthop has invalid gateway") and no
        // copy of the request, which the reply buffer would otherwise have to hold.
        socket.set_ext_ack(true).map_err(fail)?;
        socket.set_cap_ack(true).map_err(fail)?;
        Ok(RouteSocket { socket, netns: netns.to_string(), next_sequence: 1, buffer: Vec::with_capacity(RECV_BUFFER) })
    }

    /// Sends one request and waits for its answer.
    pub fn run_one(&mut self, request: Request) -> Result<Replies, NetworkError> {
        let mut replies = self.run(vec![request])?;
        Ok(replies.pop().unwrap_or_default())
    }

    /// Sends the requests in one datagram and waits until each is answered; the replies come
    /// back in request order. The kernel carries out every request even when an earlier one
    /// fails, so a batch holds requests that make sense on their own; the error returned is
    /// the first failed request's.
    pub fn run(&mut self, requests: Vec<Request>) -> Result<Vec<Replies>, NetworkError> {
        let first = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(requests.len() as u32);
        let mut datagram = Vec::new();
        let mut whats = Vec::with_capacity(requests.len());
        for (offset, request) in requests.into_iter().enumerate() {
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | request.flags;
            header.sequence_number = first.wrapping_add(offset as u32);
            let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(request.message));
            message.finalize();
            let start = datagram.len();
            datagram.resize(start + message.buffer_len(), 0);
            message.serialize(&mut datagram[start..]);
            whats.push(request.what);
        }
        let what = |index: usize| whats.get(index).map_or("a netlink request", String::as_str);
        self.socket.send(&datagram, 0).map_err(|source| netlink_error(what(0), &self.netns, source, None))?;

        let mut replies: Vec<Replies> = vec![Vec::new(); whats.len()];
        let mut answered = vec![false; whats.len()];
        let mut first_error: Option<NetworkError> = None;
        while answered.iter().any(|done| !done) {
            self.buffer.clear();
            let received = self.socket.recv(&mut self.buffer, libc::MSG_TRUNC).map_err(|source| netlink_error(what(0), &self.netns, source, None))?;
            if received > self.buffer.len() {
                return Err(self.decode_error(what(0), format!("a reply of {received} bytes did not fit in {RECV_BUFFER}")));
            }
            let mut offset = 0;
            while offset + NLMSG_HEADER_LEN <= received {
                let message = NetlinkBuffer::new_checked(&self.buffer[offset..received]).map_err(|err| self.decode_error(what(0), err.to_string()))?;
                let length = message.length() as usize;
                let index = message.sequence_number().wrapping_sub(first) as usize;
                let (message_type, flags, payload) = (message.message_type(), message.flags(), message.payload());
                offset += length.max(NLMSG_HEADER_LEN).next_multiple_of(4);
                if index >= whats.len() {
                    // Left from an earlier batch on this socket whose caller stopped reading.
                    continue;
                }
                match message_type {
                    NLMSG_ERROR => {
                        answered[index] = true;
                        let error = ErrorBuffer::new_checked(payload).map_err(|err| self.decode_error(what(index), err.to_string()))?;
                        if let Some(code) = error.code() {
                            let reason = error_reason(flags, error.payload());
                            let source = io::Error::from_raw_os_error(code.get().abs());
                            first_error.get_or_insert_with(|| netlink_error(what(index), &self.netns, source, reason));
                        }
                    }
                    NLMSG_DONE => {
                        answered[index] = true;
                        let done = DoneBuffer::new_checked(payload).map_err(|err| self.decode_error(what(index), err.to_string()))?;
                        if done.code() < 0 {
                            let reason = if flags & NLM_F_ACK_TLVS != 0 { reason_in(done.extended_ack()) } else { None };
                            let source = io::Error::from_raw_os_error(done.code().abs());
                            first_error.get_or_insert_with(|| netlink_error(what(index), &self.netns, source, reason));
                        }
                    }
                    _ => replies[index].push(payload.to_vec()),
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(replies),
        }
    }

    /// A reply that could not be understood.
    pub fn decode_error(&self, request: &str, reason: String) -> NetworkError {
        NetworkError::NetlinkReply { request: request.to_string(), netns: self.netns.clone(), reason }
    }
}

/// The kernel's reason for an error, from the extended-ack attributes after the echoed request
/// (only its header where the kernel capped it, as this socket asks).
fn error_reason(flags: u16, after_code: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HEADER_LEN
    } else {
        after_code.get(..4).map_or(0, |len| u32::from_ne_bytes([len[0], len[1], len[2], len[3]]) as usize).next_multiple_of(4)
    };
    reason_in(after_code.get(echoed..).unwrap_or_default())
}

/// The `NLMSGERR_ATTR_MSG` text among extended-ack attributes.
fn reason_in(attributes: &[u8]) -> Option<String> {
    NlasIterator::new(attributes).flatten().find(|nla| nla.kind() == NLMSGERR_ATTR_MSG).map(|nla| {
        let text = nla.value();
        String::from_utf8_lossy(text.split(|&byte| byte == 0).next().unwrap_or(text)).into_owned()
    })
}

/// A failed request, with the kernel's reason when it gave one.
pub(super) fn netlink_error(request: &str, netns: &str, source: io::Error, kernel_message: Option<String>) -> NetworkError {
    NetworkError::Netlink { request: request.to_string(), netns: netns.to_string(), source, kernel_message }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An extended-ack attribute as the kernel writes it.
    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut bytes = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        bytes.extend(kind.to_ne_bytes());
        bytes.extend(value);
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        bytes
    }

    #[test]
    fn reads_the_kernels_reason_after_a_capped_or_full_echo() {
        let reason = attribute(NLMSGERR_ATTR_MSG, b"Nexthop has invalid gateway\0");
        let mut capped = vec![0; NLMSG_HEADER_LEN];
        capped.extend(attribute(3, &[0, 0, 0, 0]));
        capped.extend(&reason);
        assert_eq!(error_reason(NLM_F_ACK_TLVS | NLM_F_CAPPED, &capped).as_deref(), Some("Nexthop has invalid gateway"));

        let mut full = 22u32.to_ne_bytes().to_vec();
        full.resize(24, 0);
        full.extend(&reason);
        assert_eq!(error_reason(NLM_F_ACK_TLVS, &full).as_deref(), Some("Nexthop has invalid gateway"));
        assert_eq!(error_reason(NLM_F_CAPPED, &capped), None, "no TLVs flagged");
        assert_eq!(reason_in(&attribute(2, &[1, 0, 0, 0])), None);
    }
}
