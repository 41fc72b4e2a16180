//! The JSON-lines file sink, for log shippers that read files. Lines are
//! appended; after a crash the last batch may appear twice.

use std::path::PathBuf;

use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

use super::Failure;
use crate::spool::Record;

#[derive(Debug)]
pub(crate) struct FileSink {
    path: PathBuf,
    file: Option<File>,
}

impl FileSink {
    pub(crate) fn new(path: PathBuf) -> FileSink {
        FileSink { path, file: None }
    }

    pub(crate) async fn deliver(&mut self, records: &[Record]) -> Result<String, Failure> {
        let mut lines = Vec::with_capacity(records.iter().map(|r| r.json.len() + 1).sum());
        for record in records {
            lines.extend_from_slice(record.json.as_bytes());
            lines.push(b'\n');
        }
        let path = self.path.display().to_string();
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .await
                    .map_err(|err| Failure::new(0, format!("failed to open {path}: {err}")))?;
                self.file.insert(file)
            }
        };
        let written = async {
            file.write_all(&lines).await?;
            file.flush().await
        };
        if let Err(err) = written.await {
            self.file = None;
            return Err(Failure::new(0, format!("failed to write {path}: {err}")));
        }
        Ok(format!("written to {path}"))
    }
}
