//! The stdio containerd hands over in Create and Exec: FIFO paths (or `file://` URIs) that
//! the process's streams are relayed to and from.

use std::path::Path;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

/// A process's stdio paths as containerd gave them (empty: none).
#[derive(Debug, Clone, Default)]
pub struct Stdio {
    /// stdin FIFO.
    pub stdin: String,
    /// stdout FIFO or file URI.
    pub stdout: String,
    /// stderr FIFO or file URI.
    pub stderr: String,
    /// The process runs on a terminal (stderr is then part of stdout).
    pub terminal: bool,
}

/// Where output goes.
pub type Output = Pin<Box<dyn AsyncWrite + Send>>;

/// Opens an output path: a FIFO containerd reads (opened read-write so that the open neither
/// blocks nor fails while containerd's reader is not there yet), a `file://` URI, or nothing.
pub fn open_output(path: &str) -> std::io::Result<Output> {
    if path.is_empty() {
        return Ok(Box::pin(tokio::io::sink()));
    }
    if let Some(file) = path.strip_prefix("file://") {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)?;
        return Ok(Box::pin(tokio::fs::File::from_std(f)));
    }
    if path.contains("://") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("stdio {path}: only FIFOs and file:// are supported"),
        ));
    }
    let sender = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(Path::new(path))?;
    Ok(Box::pin(sender))
}

/// The stdin of a process: the read half handed to the relay, and the pump that fills it
/// from containerd's FIFO. Aborting the pump (CloseIO) ends the input.
pub struct Input {
    /// What the relay reads.
    pub reader: tokio::io::DuplexStream,
    /// The pump task.
    pub pump: JoinHandle<()>,
}

/// Starts pumping the stdin FIFO at `path` into a pipe the relay reads. The FIFO is opened
/// blocking (on the blocking pool) so that the open waits for containerd's writer: a
/// non-blocking open would read end-of-file before the writer came.
pub fn open_input(path: &str) -> Input {
    let (reader, mut writer) = tokio::io::duplex(64 * 1024);
    let path = path.to_string();
    let pump = tokio::spawn(async move {
        let fifo = match tokio::task::spawn_blocking(move || std::fs::File::open(path)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                log::warn!("open stdin: {e}");
                return;
            }
            Err(_) => return,
        };
        let mut fifo = tokio::fs::File::from_std(fifo);
        let _ = copy(&mut fifo, &mut writer).await;
        let _ = writer.shutdown().await;
    });
    Input { reader, pump }
}

/// Copies until end of input; each chunk is forwarded at once (a terminal's keystrokes).
async fn copy<R, W>(from: &mut R, to: &mut W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn mkfifo(path: &Path) {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    }

    #[tokio::test]
    async fn output_reaches_the_fifo_reader_and_input_waits_for_its_writer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out");
        mkfifo(&out);
        let mut w = open_output(&out.to_string_lossy()).expect("open output");
        let mut r = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(&out)
            .expect("reader");
        w.write_all(b"hi\n").await.expect("write");
        let mut buf = [0u8; 3];
        r.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hi\n");

        let inp = dir.path().join("in");
        mkfifo(&inp);
        let mut input = open_input(&inp.to_string_lossy());
        // The writer comes later, as containerd's may.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut w = tokio::net::unix::pipe::OpenOptions::new()
            .open_sender(&inp)
            .expect("writer");
        w.write_all(b"abc").await.expect("write");
        drop(w);
        let mut got = Vec::new();
        input.reader.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"abc");
        input.pump.await.expect("pump ends");
    }
}
