//! `wasi`: the WASI a plugin gets — wasmtime-wasi's own implementation,
//! configured to deny what a plugin must not have. Granted: an empty
//! environment and no arguments, the wall and monotonic clocks, random,
//! and stdout/stderr, which become the plugin's tagged log lines (a Rust
//! guest's panic message among them). Denied: no preopened directory (no
//! file can be opened), sockets and name lookups refused, stdin closed;
//! `exit` ends the call as a trap, never the host.
//!
//! Toolchains other than Rust (componentize-py, componentize-js) read the
//! environment, the clocks and random on their first call: denying those
//! by trapping, as the first releases did, made them unusable.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::log::PluginLog;

/// Longest line of output logged as one; a longer one is logged in parts.
const MAX_LINE_BYTES: usize = 16 * 1024;
/// Output of one call logged at most; the rest is dropped (once said).
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Per-call state, built at the call's first WASI import (a Rust plugin
/// that never touches WASI costs nothing).
pub struct WasiSession {
    log: PluginLog,
    built: Option<(WasiCtx, ResourceTable)>,
}

impl WasiSession {
    pub fn new(log: PluginLog) -> Self {
        Self { log, built: None }
    }

    /// What `WasiView::ctx` of the store data answers.
    pub fn view(&mut self) -> WasiCtxView<'_> {
        let log = &self.log;
        let (ctx, table) = self.built.get_or_insert_with(|| {
            let ctx = WasiCtxBuilder::new()
                .stdout(LogStream::new(log.clone(), Stream::Stdout))
                .stderr(LogStream::new(log.clone(), Stream::Stderr))
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build();
            (ctx, ResourceTable::new())
        });
        WasiCtxView { ctx, table }
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// A plugin's stdout or stderr: each complete line becomes a log line of
/// the plugin (stdout at INFO, stderr at WARN); what is left when the call
/// ends is logged then.
#[derive(Clone)]
struct LogStream(Arc<Mutex<Lines>>);

struct Lines {
    log: PluginLog,
    stream: Stream,
    pending: Vec<u8>,
    written: usize,
}

impl LogStream {
    fn new(log: PluginLog, stream: Stream) -> Self {
        Self(Arc::new(Mutex::new(Lines { log, stream, pending: Vec::new(), written: 0 })))
    }

    fn write(&self, bytes: &[u8]) {
        self.0.lock().expect("poisoned").take(bytes);
    }
}

impl Lines {
    fn take(&mut self, bytes: &[u8]) {
        let room = MAX_OUTPUT_BYTES.saturating_sub(self.written);
        if room == 0 {
            return;
        }
        let kept = &bytes[..bytes.len().min(room)];
        self.written += kept.len();
        self.pending.extend_from_slice(kept);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
        while self.pending.len() >= MAX_LINE_BYTES {
            let part: Vec<u8> = self.pending.drain(..MAX_LINE_BYTES).collect();
            self.emit(&part);
        }
        if self.written == MAX_OUTPUT_BYTES {
            self.flush();
            self.emit(format!("[output beyond {MAX_OUTPUT_BYTES} bytes in one call is dropped]").as_bytes());
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\r');
        let PluginLog { plugin, version, request_id } = &self.log;
        match self.stream {
            Stream::Stdout => {
                tracing::info!(target: "plugin", plugin, plugin_version = version, request_id, stream = "stdout", "{line}")
            }
            Stream::Stderr => {
                tracing::warn!(target: "plugin", plugin, plugin_version = version, request_id, stream = "stderr", "{line}")
            }
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.flush();
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        LogStream::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(MAX_LINE_BYTES)
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>, bytes: &[u8]) -> Poll<std::io::Result<usize>> {
        LogStream::write(&self, bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Lines {
        let log = PluginLog { plugin: "p".into(), version: "1".into(), request_id: "r".into() };
        Lines { log, stream: Stream::Stdout, pending: Vec::new(), written: 0 }
    }

    #[test]
    fn complete_lines_leave_and_the_rest_waits() {
        let mut lines = lines();
        lines.take(b"first\nsec");
        assert_eq!(lines.pending, b"sec");
        lines.take(b"ond\n");
        assert!(lines.pending.is_empty());
    }

    #[test]
    fn output_is_bounded() {
        let mut lines = lines();
        lines.take(&vec![b'x'; MAX_LINE_BYTES + 10]);
        assert_eq!(lines.pending.len(), 10, "a long line is logged in parts");
        lines.take(&vec![b'y'; 2 * MAX_OUTPUT_BYTES]);
        assert_eq!(lines.written, MAX_OUTPUT_BYTES);
        assert!(lines.pending.is_empty());
        lines.take(b"more");
        assert_eq!(lines.written, MAX_OUTPUT_BYTES, "nothing more is kept");
    }
}
