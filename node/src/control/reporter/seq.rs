//! The health reporter's sequence numbers, monotonic across restarts of the node.
//!
//! The state machine keeps, per (observer, backend), only the report with the highest
//! sequence number, so a report proposed before a crash that commits after the restart
//! must carry a smaller number than every report of the new process. A counter in the
//! node's data dir guarantees that without an fsync per report: the file holds the end
//! of a reserved block; numbers below it are handed out from memory, and crossing it
//! first persists the next block (write to a temp file, fsync, rename, fsync the dir).
//! A restart starts at the persisted end, skipping what the old process did not use.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Numbers reserved per durable write.
const BLOCK: u64 = 1024;

/// Reading or writing the counter file failed.
#[derive(Debug, thiserror::Error)]
pub enum SeqError {
    #[error("health report counter {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("health report counter {path}: not a number: {content:?}")]
    Corrupt { path: String, content: String },
    #[error("health report counter: background write failed: {0}")]
    Join(String),
}

/// Hands out this observer's report sequence numbers.
#[derive(Debug)]
pub struct ReportSeq {
    path: PathBuf,
    next: u64,
    /// Every number below this may have been used by this or an earlier process.
    reserved: u64,
}

impl ReportSeq {
    /// Opens the counter at `path` (absent: a node that never reported).
    pub async fn open(path: PathBuf) -> Result<ReportSeq, SeqError> {
        let reading = path.clone();
        let stored = blocking(move || read_counter(&reading)).await?;
        Ok(ReportSeq {
            path,
            next: stored,
            reserved: stored,
        })
    }

    /// A counter that ignores what is on disk (unreadable or corrupt): numbers start
    /// above the replicated state's floor and the file is rewritten at the first use.
    pub fn fresh(path: PathBuf) -> ReportSeq {
        ReportSeq {
            path,
            next: 0,
            reserved: 0,
        }
    }

    /// The next number, above `floor` too (the highest number of this observer already
    /// in the replicated state: covers a data dir restored from an older backup).
    pub async fn next_above(&mut self, floor: u64) -> Result<u64, SeqError> {
        let seq = self.next.max(floor.saturating_add(1));
        if seq >= self.reserved {
            let end = seq.saturating_add(BLOCK);
            let path = self.path.clone();
            blocking(move || write_counter(&path, end)).await?;
            self.reserved = end;
        }
        self.next = seq.saturating_add(1);
        Ok(seq)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SeqError> + Send + 'static,
) -> Result<T, SeqError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(SeqError::Join(e.to_string())))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SeqError + '_ {
    move |source| SeqError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read_counter(path: &Path) -> Result<u64, SeqError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error(path)(e)),
    };
    text.trim().parse().map_err(|_| SeqError::Corrupt {
        path: path.display().to_string(),
        content: text.chars().take(40).collect(),
    })
}

fn write_counter(path: &Path, value: u64) -> Result<(), SeqError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(format!("{value}\n").as_bytes())
        .map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn numbers_grow_across_reopen_even_when_a_block_was_not_used_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq");
        let mut seq = ReportSeq::open(path.clone()).await.unwrap();
        let first = seq.next_above(0).await.unwrap();
        let second = seq.next_above(0).await.unwrap();
        assert!(second > first);
        // A crash: the old process used two numbers; the new one starts above them all.
        let mut reopened = ReportSeq::open(path.clone()).await.unwrap();
        let third = reopened.next_above(0).await.unwrap();
        assert!(third > second, "{third} <= {second}");
    }

    #[tokio::test]
    async fn floor_from_the_replicated_state_is_respected_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq");
        let mut seq = ReportSeq::open(path.clone()).await.unwrap();
        assert_eq!(seq.next_above(5000).await.unwrap(), 5001);
        assert_eq!(seq.next_above(10).await.unwrap(), 5002);
        let mut reopened = ReportSeq::open(path).await.unwrap();
        assert!(reopened.next_above(0).await.unwrap() > 5002);
    }

    #[tokio::test]
    async fn a_corrupt_counter_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq");
        std::fs::write(&path, "garbage").unwrap();
        let err = ReportSeq::open(path.clone()).await.unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("not a number"), "{err}");
    }
}
