//! The byte streams: [`seal`] copies a stream (pg_dump's stdout, a tar) through zstd and then
//! age into a storage writer, hashing and counting what is stored on the way — chunk by chunk,
//! never the whole thing in memory, compressed once. [`unseal`] is the way back: age, then
//! zstd. [`hash`] reads a stored file for its SHA-256. age speaks the `futures` I/O traits,
//! tokio its own; `tokio_util::compat` joins them.

use sha2::{Digest, Sha256};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt, TokioAsyncReadCompatExt};
use tokio_util::io::SyncIoBridge;

/// The copy buffer: large enough for pipe throughput, small enough to never matter.
const CHUNK: usize = 256 * 1024;

/// What [`seal`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Bytes read from the input.
    pub raw_bytes: u64,
    /// Bytes written to storage.
    pub stored_bytes: u64,
    /// SHA-256 of the stored bytes, hex.
    pub sha256: String,
}

#[derive(Default)]
struct Tally {
    bytes: u64,
    hasher: Sha256,
}

/// Passes writes through, counting and hashing them.
struct HashingWriter<W> {
    inner: W,
    tally: Arc<Mutex<Tally>>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for HashingWriter<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled
            && let Ok(mut t) = this.tally.lock()
        {
            t.bytes += *n as u64;
            t.hasher.update(&buf[..*n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Chunks read ahead of the compressor: the pipe from `pg_dump` keeps draining while a chunk
/// is being compressed, as the zstd CLI's own reader thread does.
const READ_AHEAD: usize = 8;

/// The reading stage, on a thread of its own: fills buffers from `input` (blocking reads of a
/// pipe) and sends them on, taking emptied ones back from the compressor so nothing is
/// allocated per chunk. Ends at the end of the input, or when the compressor has gone.
fn read_chunks<R: std::io::Read>(
    mut input: R,
    full: mpsc::SyncSender<io::Result<Vec<u8>>>,
    empty: mpsc::Receiver<Vec<u8>>,
) {
    loop {
        let mut buf = empty.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        buf.resize(CHUNK, 0);
        let mut filled = 0;
        while filled < CHUNK {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = full.send(Err(e));
                    return;
                }
            }
        }
        if filled == 0 {
            return; // the end: dropping `full` tells the compressor
        }
        buf.truncate(filled);
        if full.send(Ok(buf)).is_err() {
            return;
        }
    }
}

/// The compression stage, on a thread of its own: compresses the chunks at `level` with frame
/// checksums into `output`, counts the input bytes into `read`, hands the emptied buffers
/// back, and shuts `output` down so the next stage sees the end.
fn compress(
    full: mpsc::Receiver<io::Result<Vec<u8>>>,
    empty: mpsc::SyncSender<Vec<u8>>,
    output: SyncIoBridge<DuplexStream>,
    level: i32,
    read: &AtomicU64,
) -> io::Result<()> {
    let mut zstd = zstd::stream::write::Encoder::new(output, level)?;
    zstd.include_checksum(true)?;
    for chunk in full {
        let chunk = chunk?;
        std::io::Write::write_all(&mut zstd, &chunk)?;
        read.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        let _ = empty.try_send(chunk);
    }
    zstd.finish()?.shutdown()
}

/// Parses the recipients (validated by the config already).
pub fn recipients(keys: &[String]) -> io::Result<Vec<age::x25519::Recipient>> {
    keys.iter()
        .map(|k| k.parse::<age::x25519::Recipient>().map_err(|e| io::Error::other(format!("recipient `{k}`: {e}"))))
        .collect()
}

/// Copies `input` (a blocking reader: a child's stdout, a pipe) through zstd (`level`, with frame checksums) and age (to `recipients`) into
/// `output`, then shuts `output` down. `progress` hears the input bytes so far, ten times a
/// second and at the end.
///
/// Three stages run at once, as `pg_dump | zstd` overlaps its processes: reading the input
/// and compressing, each on a thread of its own with blocking I/O (mxwarden's async runtime
/// is single-threaded) joined by a few recycled buffers, and encryption + hashing + writing on
/// the runtime, fed the compressed stream through an in-memory pipe of a few MiB.
pub async fn seal<R, W>(
    input: R,
    output: W,
    level: i32,
    recipients: &[age::x25519::Recipient],
    progress: &(dyn Fn(u64) + Send + Sync),
) -> io::Result<Sealed>
where
    R: std::io::Read + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let tally = Arc::new(Mutex::new(Tally::default()));
    let hashing = HashingWriter { inner: output, tally: tally.clone() };
    let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| io::Error::other(format!("cannot encrypt: {e}")))?;
    let (packed_in, mut packed_out) = tokio::io::duplex(4 * CHUNK);
    let read = Arc::new(AtomicU64::new(0));
    let (packed_in, counter) = (SyncIoBridge::new(packed_in), read.clone());
    let (full_tx, full_rx) = mpsc::sync_channel(READ_AHEAD);
    let (empty_tx, empty_rx) = mpsc::sync_channel(READ_AHEAD + 2);
    tokio::task::spawn_blocking(move || read_chunks(input, full_tx, empty_rx));
    let mut compressing = tokio::task::spawn_blocking(move || compress(full_rx, empty_tx, packed_in, level, &counter));
    let encrypt = tokio::spawn(async move {
        let sink = tokio_util::compat::TokioAsyncWriteCompatExt::compat_write(hashing);
        let mut encrypted = encryptor.wrap_async_output(sink).await?.compat_write();
        tokio::io::copy(&mut packed_out, &mut encrypted).await?;
        encrypted.shutdown().await // age's last chunk, then the output
    });
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let compressed = loop {
        tokio::select! {
            done = &mut compressing => break done,
            _ = tick.tick() => progress(read.load(Ordering::Relaxed)),
        }
    };
    let raw_bytes = read.load(Ordering::Relaxed);
    progress(raw_bytes);
    let joined = |r: Result<io::Result<()>, tokio::task::JoinError>| r.unwrap_or_else(|e| Err(io::Error::other(e)));
    let (compressed, encrypted) = (joined(compressed), joined(encrypt.await));
    // The stage nearest the output failed first; the other only saw a closed pipe.
    encrypted?;
    compressed?;
    let t = tally.lock().map_err(|_| io::Error::other("hash state poisoned"))?;
    Ok(Sealed { raw_bytes, stored_bytes: t.bytes, sha256: hex::encode(t.hasher.clone().finalize()) })
}

/// Reads age identities (`AGE-SECRET-KEY-1…` lines, `#` comments) from a file.
pub(crate) fn identities(path: &std::path::Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read the identity file {}: {e}", path.display()))?;
    let file = age::IdentityFile::from_buffer(&text[..])
        .map_err(|e| format!("{} is not an age identity file: {e}", path.display()))?;
    let ids = file.into_identities().map_err(|e| format!("{}: {e}", path.display()))?;
    if ids.is_empty() {
        return Err(format!("{} holds no age identity (AGE-SECRET-KEY-1…)", path.display()));
    }
    Ok(ids)
}

/// Decrypts and decompresses a stored stream. Errors name no key material.
pub(crate) async fn unseal<R>(
    input: R,
    identities: &[Box<dyn age::Identity + Send + Sync>],
) -> io::Result<impl AsyncRead + Unpin + Send>
where
    R: AsyncRead + Unpin + Send,
{
    let decryptor = age::Decryptor::new_async_buffered(tokio::io::BufReader::with_capacity(CHUNK, input).compat())
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not an age file: {e}")))?;
    let reader = decryptor
        .decrypt_async(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("cannot decrypt: {e}")))?;
    let plain = tokio::io::BufReader::with_capacity(CHUNK, reader.compat());
    let mut zstd = async_compression::tokio::bufread::ZstdDecoder::new(plain);
    zstd.multiple_members(true);
    Ok(zstd)
}

/// SHA-256 (hex) and length of a stream.
pub(crate) async fn hash<R: AsyncRead + Unpin>(mut input: R) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sealed_stream_unseals_to_the_same_bytes_with_the_generated_key() {
        let identity = age::x25519::Identity::generate();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealed");
        let file = tokio::fs::File::create(&path).await.unwrap();
        let seen = std::sync::atomic::AtomicU64::new(0);
        let sealed = seal(std::io::Cursor::new(data.clone()), file, 3, &[identity.to_public()], &|n| {
            seen.store(n, std::sync::atomic::Ordering::Relaxed)
        })
        .await
        .unwrap();
        let stored = std::fs::read(&path).unwrap();
        assert_eq!(sealed.raw_bytes, data.len() as u64);
        assert_eq!(sealed.stored_bytes, stored.len() as u64);
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), data.len() as u64, "progress saw every byte");
        assert!(stored.len() < data.len() / 10, "compressed: {} bytes", stored.len());
        assert_eq!(hash(&stored[..]).await.unwrap(), (sealed.sha256.clone(), stored.len() as u64));
        assert!(stored.starts_with(b"age-encryption.org/v1"), "an age file");
        let ids: Vec<Box<dyn age::Identity + Send + Sync>> = vec![Box::new(identity)];
        let mut back = Vec::new();
        unseal(&stored[..], &ids).await.unwrap().read_to_end(&mut back).await.unwrap();
        assert!(back == data, "round trip");
        let other: Vec<Box<dyn age::Identity + Send + Sync>> = vec![Box::new(age::x25519::Identity::generate())];
        let wrong = match unseal(&stored[..], &other).await {
            Ok(_) => panic!("another key decrypted it"),
            Err(e) => e.to_string(),
        };
        assert!(wrong.contains("cannot decrypt"), "{wrong}");
    }
}
