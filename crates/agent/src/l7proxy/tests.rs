use super::*;
use api::netpol::flotilla::HttpRule;
use net::policy::HttpPort;

fn state() -> State {
    let get_public = HttpRule { method: Some("GET".into()), path: Some("/public/.*".into()), ..Default::default() };
    let mut port = HttpPort::default();
    port.peers.insert(Some(300), Access::Rules([get_public].into()));
    port.peers.insert(Some(301), Access::All);
    let mut state = State::default();
    state.http.insert((400, 8080), port);
    state.ipcache.insert("10.42.0.5/32".parse().unwrap(), 300);
    state.ipcache.insert("10.42.0.9/32".parse().unwrap(), 400);
    state.ipcache.insert("198.18.0.0/15".parse().unwrap(), 1 << 24);
    state
}

fn asked<'a>(method: &'a str, path: &'a str, headers: &'a BTreeMap<String, Vec<String>>) -> Request<'a> {
    Request { method, path, host: "web", headers }
}

#[test]
fn each_peer_may_ask_what_its_rules_allow() {
    let tables = Tables::new(&state());
    let none = BTreeMap::new();
    assert!(tables.allows(400, 8080, 300, &asked("GET", "/public/a", &none)));
    assert!(!tables.allows(400, 8080, 300, &asked("GET", "/private", &none)), "outside the client's rules");
    assert!(!tables.allows(400, 8080, 300, &asked("POST", "/public/a", &none)));
    assert!(tables.allows(400, 8080, 301, &asked("DELETE", "/anything", &none)), "a peer a plain rule allows may ask anything");
    assert!(!tables.allows(400, 8080, 302, &asked("GET", "/public/a", &none)), "a peer no rule names");
    assert!(tables.allows(400, 9090, 302, &asked("GET", "/x", &none)), "a port without HTTP rules is the L3/L4 policy's alone");
}

#[test]
fn addresses_are_identities_by_longest_prefix() {
    let tables = Tables::new(&state());
    assert_eq!(tables.identity("10.42.0.5".parse().unwrap()), 300);
    assert_eq!(tables.identity("198.19.3.4".parse().unwrap()), 1 << 24);
    assert_eq!(tables.identity("203.0.113.7".parse().unwrap()), api::identity::WORLD);
    assert!(Tables::new(&State::default()).ports.is_empty());
}

#[test]
fn the_host_header_loses_its_port() {
    assert_eq!(without_port("web:8080"), "web");
    assert_eq!(without_port("web"), "web");
    assert_eq!(without_port("[::1]:80"), "[::1]");
}

#[test]
fn paths_a_server_could_read_otherwise_are_ambiguous() {
    for clear in ["/", "/public/", "/public/a.html", "/a/b?x=1", "/public/%20space"] {
        assert!(!ambiguous_path(clear), "{clear}");
    }
    for unclear in ["/public/../admin", "/public/./x", "/public/%2e%2e/admin", "/public/%2E%2e/admin", "/public%2fadmin", "/a\\b", "/public//x", "/.."] {
        assert!(ambiguous_path(unclear), "{unclear}");
    }
}
