//! The etcd store against the conformance suite on a real etcd (`/usr/bin/etcd`), plus key
//! prefixes keeping clusters that share an etcd apart.

use store::conformance;
use store::testing::EtcdServer;
use store::{EtcdStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite() {
    let etcd = EtcdServer::start();
    let store = EtcdStore::connect(&etcd.endpoints(), "/flotilla").await.expect("connect to etcd");
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_conformance_suite_without_a_prefix() {
    let etcd = EtcdServer::start();
    let store = EtcdStore::connect(&etcd.endpoints(), "").await.expect("connect to etcd");
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_with_different_prefixes_do_not_see_each_other() {
    let etcd = EtcdServer::start();
    let blue = EtcdStore::connect(&etcd.endpoints(), "/blue").await.unwrap();
    let green = EtcdStore::connect(&etcd.endpoints(), "/green").await.unwrap();
    let raw = EtcdStore::connect(&etcd.endpoints(), "").await.unwrap();
    let mut green_watch = green.watch("/", green.revision().await.unwrap()).await.unwrap();

    blue.create("/registry/pods/a", b"blue".to_vec()).await.unwrap();
    assert_eq!(green.get("/registry/pods/a").await.unwrap(), None);
    assert!(green.list("/").await.unwrap().0.is_empty());
    green.create("/registry/pods/a", b"green".to_vec()).await.unwrap();
    assert_eq!(blue.get("/registry/pods/a").await.unwrap().unwrap().value, b"blue");

    let event = conformance::next_event(&mut green_watch, "green watch").await;
    assert_eq!((event.kv.key.as_str(), event.kv.value.as_slice()), ("/registry/pods/a", &b"green"[..]));
    let keys: Vec<String> = raw.list("").await.unwrap().0.into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys, ["/blue/registry/pods/a", "/green/registry/pods/a"], "keys as stored in etcd");
}

#[tokio::test]
async fn connecting_to_nothing_fails_with_the_endpoint_in_the_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = EtcdStore::connect(std::slice::from_ref(&endpoint), "/x").await.err().expect("no etcd there");
    assert!(error.to_string().contains(&endpoint), "error names the endpoint: {error}");
}
