//! Container log files: one file per container start (`<restart>.log`, so `--previous` is the
//! one before), rotated by copy-and-truncate (the container holds the file open with
//! O_APPEND, so truncation is safe), read and followed for `flotilla logs`.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The log file of `container`'s start number `restart` in `pod_log_dir`.
pub fn log_path(pod_log_dir: &Path, container: &str, restart: i32) -> PathBuf {
    pod_log_dir.join(container).join(format!("{restart}.log"))
}

/// The newest (or, with `previous`, the one before) log file of a container.
pub fn find_log(pod_log_dir: &Path, container: &str, previous: bool) -> Option<PathBuf> {
    let dir = pod_log_dir.join(container);
    let mut numbers: Vec<i32> = std::fs::read_dir(&dir).ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".log")?.parse().ok()).collect();
    numbers.sort_unstable();
    let pick = if previous { numbers.iter().rev().nth(1) } else { numbers.last() };
    pick.map(|n| dir.join(format!("{n}.log")))
}

/// Rotates `path` when it is over `max_bytes`: its content moves to `<path>.1` (replacing an
/// older one) and the file is truncated in place.
pub fn rotate_if_needed(path: &Path, max_bytes: u64) -> std::io::Result<bool> {
    let len = std::fs::metadata(path)?.len();
    if len <= max_bytes {
        return Ok(false);
    }
    let rotated = path.with_extension("log.1");
    std::fs::copy(path, &rotated)?;
    std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// Rotates every container log under `logs_dir` that is over `max_bytes`.
pub fn rotate_all(logs_dir: &Path, max_bytes: u64) {
    let Ok(pods) = std::fs::read_dir(logs_dir) else { return };
    for pod in pods.flatten() {
        let Ok(containers) = std::fs::read_dir(pod.path()) else { continue };
        for container in containers.flatten() {
            let Ok(files) = std::fs::read_dir(container.path()) else { continue };
            for file in files.flatten() {
                let path = file.path();
                if path.extension().is_some_and(|e| e == "log") {
                    if let Err(e) = rotate_if_needed(&path, max_bytes) {
                        tracing::debug!(path = %path.display(), error = %e, "log rotation failed");
                    }
                }
            }
        }
    }
}

/// The byte offset where the last `lines` lines of `path` start.
async fn tail_offset(path: &Path, lines: usize) -> std::io::Result<u64> {
    let data = tokio::fs::read(path).await?;
    let mut seen = 0;
    for (i, b) in data.iter().enumerate().rev() {
        if *b == b'\n' && i + 1 != data.len() {
            seen += 1;
            if seen == lines {
                return Ok(i as u64 + 1);
            }
        }
    }
    Ok(0)
}

/// The content of a log file as a stream; with `follow`, keeps streaming what is appended
/// until `stop` resolves (the container's pod is gone).
pub fn read_log(
    path: PathBuf,
    follow: bool,
    tail: Option<usize>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    async_stream(path, follow, tail, stop)
}

fn async_stream(
    path: PathBuf,
    follow: bool,
    tail: Option<usize>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(16);
    tokio::spawn(async move {
        let mut stop = Box::pin(stop);
        let result: std::io::Result<()> = async {
            let mut file = tokio::fs::File::open(&path).await?;
            let mut offset = match tail {
                Some(n) => tail_offset(&path, n).await?,
                None => 0,
            };
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let len = file.metadata().await?.len();
                if len < offset {
                    offset = 0; // rotated: the file was truncated
                }
                file.seek(SeekFrom::Start(offset)).await?;
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    offset += n as u64;
                    if tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        return Ok(());
                    }
                }
                if !follow {
                    return Ok(());
                }
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tx.closed() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
        .await;
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn finds_current_and_previous_logs() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0, 1, 2] {
            let p = log_path(dir.path(), "c", n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("run {n}\n")).unwrap();
        }
        assert_eq!(find_log(dir.path(), "c", false), Some(log_path(dir.path(), "c", 2)));
        assert_eq!(find_log(dir.path(), "c", true), Some(log_path(dir.path(), "c", 1)));
        assert_eq!(find_log(dir.path(), "other", false), None);
    }

    #[test]
    fn rotation_keeps_the_old_content_and_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, "x".repeat(100)).unwrap();
        assert!(!rotate_if_needed(&p, 200).unwrap());
        assert!(rotate_if_needed(&p, 50).unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        assert_eq!(std::fs::read_to_string(dir.path().join("0.log.1")).unwrap().len(), 100);
    }

    #[tokio::test]
    async fn tail_and_follow() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        let all: Vec<u8> = read_log(p.clone(), false, Some(2), std::future::pending()).map(|b| b.unwrap().to_vec()).concat().await;
        assert_eq!(all, b"b\nc\n");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut follow = Box::pin(read_log(p.clone(), true, None, async move {
            let _ = stop_rx.await;
        }));
        assert_eq!(follow.next().await.unwrap().unwrap(), Bytes::from_static(b"a\nb\nc\n"));
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"d\n").unwrap();
        assert_eq!(follow.next().await.unwrap().unwrap(), Bytes::from_static(b"d\n"));
        stop_tx.send(()).unwrap();
        assert!(follow.next().await.is_none());
    }
}
