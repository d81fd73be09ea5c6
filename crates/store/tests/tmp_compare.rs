use std::time::Instant;
use store::{EmbeddedStore, EtcdStore, Store};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare() {
    let etcd = store::testing::EtcdServer::start();
    let e = EtcdStore::connect(&etcd.endpoints(), "/x").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
    let v = vec![1u8; 1024];
    let mut k = 0;
    for _ in 0..4 {
        for (name, s) in [("etcd", &e as &dyn Store), ("embedded", &m as &dyn Store)] {
            let t = Instant::now();
            for _ in 0..200 { k += 1; s.create(&format!("/k/{k}"), v.clone()).await.unwrap(); }
            println!("{name}: {:?}/create", t.elapsed() / 200);
        }
    }
}
