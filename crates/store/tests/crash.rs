//! Crash safety of the embedded store. This binary re-runs itself as a writer that creates
//! keys and swaps a counter from several tasks, printing each write once it is acknowledged;
//! the test kills it with SIGKILL in the middle of its writes, reopens the file, and checks
//! that every acknowledged write is there with its value and in the watch history. Repeated
//! over several rounds on the same file.
//!
//! Then rounds with volatile leases on the same file: the writer renews leases kept in memory as
//! fast as it can (past more than one batch of reserved revisions) beside a slow durable creator.
//! After the kill, every acknowledged durable write is there, the leases are gone, and the
//! reopened store's revision is past every revision the writer acknowledged.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use store::{EmbeddedOptions, EmbeddedStore, Revision, Store, StoreError};

/// Set to the database path in the writer process.
const WRITER_ENV: &str = "FLOTILLA_STORE_CRASH_WRITER";
/// Set to the round number in the writer process.
const ROUND_ENV: &str = "FLOTILLA_STORE_CRASH_ROUND";
/// Set in the writer process of a round with volatile leases.
const VOLATILE_ENV: &str = "FLOTILLA_STORE_CRASH_VOLATILE";
const ROUNDS: u64 = 5;
const VOLATILE_ROUNDS: u64 = 3;
const WRITER_TASKS: usize = 4;
const COUNTER: &str = "/crash/counter";
/// The volatile prefix of the volatile rounds.
const LEASES: &str = "/crash/lease/";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    if let Some(path) = std::env::var_os(WRITER_ENV) {
        let round: u64 = std::env::var(ROUND_ENV).ok().and_then(|r| r.parse().ok()).expect("round number");
        if std::env::var_os(VOLATILE_ENV).is_some() {
            runtime.block_on(renew_leases_until_killed(Path::new(&path), round));
        } else {
            runtime.block_on(write_until_killed(Path::new(&path), round));
        }
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.redb");
    let started = Instant::now();
    let mut verified = 0;
    for round in 0..ROUNDS {
        let acknowledged = run_writer_and_kill(&path, round, 40 + 53 * round as usize, false);
        verified += acknowledged.len();
        runtime.block_on(verify(&path, &acknowledged));
    }
    for round in ROUNDS..ROUNDS + VOLATILE_ROUNDS {
        let acknowledged = run_writer_and_kill(&path, round, 12_000 + 4_000 * (round - ROUNDS) as usize, true);
        verified += acknowledged.len();
        runtime.block_on(verify_volatile(&path, &acknowledged));
    }
    let rounds = ROUNDS + VOLATILE_ROUNDS;
    println!("crash: {rounds} SIGKILLed writers, {verified} acknowledged writes verified in {:?}", started.elapsed());
}

fn volatile_options() -> EmbeddedOptions {
    EmbeddedOptions { volatile_prefixes: vec![LEASES.into()], ..EmbeddedOptions::default() }
}

fn value(key: &str) -> Vec<u8> {
    format!("{key}:").repeat(8).into_bytes()
}

/// The writer process: never returns; it is killed.
async fn write_until_killed(path: &Path, round: u64) {
    let store = EmbeddedStore::open(path).expect("writer: open store");
    let creators = (0..WRITER_TASKS).map(|task| {
        let store = &store;
        async move {
            for i in 0.. {
                let key = format!("/crash/{round}/{task}/{i}");
                let revision = store.create(&key, value(&key)).await.expect("writer: create");
                println!("{revision} {key}");
            }
        }
    });
    let counter = async {
        loop {
            let current = store.get(COUNTER).await.expect("writer: get counter");
            let revision = match current {
                None => store.create(COUNTER, b"0".to_vec()).await,
                Some(kv) => {
                    let next: u64 = String::from_utf8_lossy(&kv.value).parse::<u64>().expect("counter value") + 1;
                    store.update(COUNTER, next.to_string().into_bytes(), kv.mod_revision).await
                }
            }
            .expect("writer: swap counter");
            let kv = store.get(COUNTER).await.expect("writer: read counter back").expect("counter present");
            assert_eq!(kv.mod_revision, revision, "writer: only this task writes the counter");
            println!("{revision} {COUNTER} {}", String::from_utf8_lossy(&kv.value));
        }
    };
    futures::join!(futures::future::join_all(creators), counter);
}

/// The writer process of a volatile round: never returns; it is killed.
async fn renew_leases_until_killed(path: &Path, round: u64) {
    let store = EmbeddedStore::open_with(path, volatile_options()).expect("writer: open store");
    let renewers = (0..WRITER_TASKS).map(|task| {
        let store = &store;
        async move {
            let key = format!("{LEASES}{round}/{task}");
            let mut revision = store.create(&key, b"0".to_vec()).await.expect("writer: create lease");
            println!("{revision} {key} 0");
            for beat in 1u64.. {
                revision = store.update(&key, beat.to_string().into_bytes(), revision).await.expect("writer: renew");
                println!("{revision} {key} {beat}");
            }
        }
    });
    let creator = async {
        for i in 0.. {
            let key = format!("/crash/{round}/durable/{i}");
            let revision = store.create(&key, value(&key)).await.expect("writer: create");
            println!("{revision} {key}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    futures::join!(futures::future::join_all(renewers), creator);
}

/// An acknowledged write: key → (revision, value).
type Acknowledged = BTreeMap<Revision, (String, Vec<u8>)>;

/// Runs a writer for `round`, kills it after `kill_after` acknowledgements, and returns every
/// write it acknowledged (including those printed between the decision and the kill).
fn run_writer_and_kill(path: &Path, round: u64, kill_after: usize, volatile: bool) -> Acknowledged {
    let mut command = Command::new(std::env::current_exe().expect("own path"));
    command.env(WRITER_ENV, path).env(ROUND_ENV, round.to_string()).stdout(Stdio::piped());
    if volatile {
        command.env(VOLATILE_ENV, "1");
    }
    let mut child = command.spawn().expect("start the writer");
    let stdout = child.stdout.take().expect("writer stdout");
    let mut acknowledged = Acknowledged::new();
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read writer output");
        let mut fields = line.split(' ');
        // A line cut short by the kill has no complete fields; it proves nothing either way.
        let (Some(revision), Some(key)) = (fields.next().and_then(|r| r.parse().ok()), fields.next()) else {
            continue;
        };
        let value = match fields.next() {
            Some(counter) => counter.as_bytes().to_vec(),
            None => value(key),
        };
        acknowledged.insert(revision, (key.to_owned(), value));
        if !killed && acknowledged.len() >= kill_after {
            child.kill().expect("SIGKILL the writer");
            killed = true;
        }
    }
    let status = child.wait().expect("reap the writer");
    assert_eq!(status.signal(), Some(9), "round {round}: the writer must die by SIGKILL mid-writes, not {status}");
    acknowledged
}

async fn verify(path: &Path, acknowledged: &Acknowledged) {
    let store = EmbeddedStore::open(path).unwrap_or_else(|error| panic!("reopen after SIGKILL: {error}"));
    let current = store.revision().await.expect("revision");
    let last = *acknowledged.keys().next_back().expect("the writer acknowledged something");
    assert!(current >= last, "store revision {current} lost acknowledged revision {last}");

    let mut counter = None;
    for (revision, (key, value)) in acknowledged {
        if key == COUNTER {
            counter = Some((*revision, value.clone()));
            continue;
        }
        let kv = store.get(key).await.expect("get").unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!((kv.mod_revision, &kv.value), (*revision, value), "acknowledged {key}");
    }
    if let Some((revision, value)) = counter {
        let kv = store.get(COUNTER).await.expect("get counter").expect("counter lost");
        // One more swap may have committed without being acknowledged.
        assert!(kv.mod_revision >= revision, "counter went back from revision {revision} to {}", kv.mod_revision);
        if kv.mod_revision == revision {
            assert_eq!(kv.value, value, "counter at its acknowledged revision");
        }
    }

    let first = *acknowledged.keys().next().expect("non-empty");
    let mut history = store.watch("/crash/", first - 1).await.expect("watch the round's history");
    let replay = async {
        let mut seen = 0;
        while seen < acknowledged.len() {
            let event = history.next().await.expect("history ends early").expect("history readable");
            if let Some((key, _)) = acknowledged.get(&event.revision()) {
                assert_eq!(&event.kv.key, key, "history at revision {}", event.revision());
                seen += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), replay).await.expect("history replays every acknowledged write");
}

async fn verify_volatile(path: &Path, acknowledged: &Acknowledged) {
    let store = EmbeddedStore::open_with(path, volatile_options()).unwrap_or_else(|error| panic!("reopen: {error}"));
    let highest = *acknowledged.keys().next_back().expect("the writer acknowledged something");
    let current = store.revision().await.expect("revision");
    assert!(current > highest, "revision {current} after the crash does not pass acknowledged revision {highest}");
    let (leases, _) = store.list(LEASES).await.expect("list leases");
    assert!(leases.is_empty(), "volatile leases survived the crash: {leases:?}");

    let mut durable = 0;
    for (revision, (key, value)) in acknowledged.iter().filter(|(_, (key, _))| !key.starts_with(LEASES)) {
        let kv = store.get(key).await.expect("get").unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!((kv.mod_revision, &kv.value), (*revision, value), "acknowledged {key}");
        durable += 1;
    }
    assert!(durable > 0, "the round acknowledged no durable write");
    match store.watch("/crash/", highest).await {
        Err(StoreError::Compacted { .. }) => {}
        Err(other) => panic!("watch from before the crash: expected Compacted, got {other}"),
        Ok(_) => panic!("watch from before the crash replays history that lost its volatile changes"),
    }
}
