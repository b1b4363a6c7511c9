//! The links between nodes: Overmind's own listener and dialer (with TLS if configured),
//! handed to ractor_cluster as external streams, with one change on the way out.
//!
//! ractor_cluster announces every local actor whose message type is serializable to every
//! peer — at each link's start, and then at every spawn — and each peer keeps a `RemoteActor`
//! (about 11 KB) per announced actor. Activations must stay local, so the writer below drops
//! them from the `Spawn` announcements it carries: activations are named
//! [`ACTIVATION_NAME_PREFIX`]`<n>`, and only those entries go. Everything else — the routers,
//! the application's own actors — passes byte for byte.
//!
//! The same writer drops the `Terminate` notices for the actors it kept quiet about: the peer
//! never learned of them, and a notice per stopped activation, per peer, made every hand-over
//! of thousands of actors send and process thousands of frames for nothing.
//!
//! Wire format (ractor_cluster 0.16): each frame is a big-endian u64 length and a protobuf
//! `meta.NetworkMessage`; `control = 3` holds a `control.ControlMessage` whose `spawn = 1`
//! holds `repeated control.Actor actors = 1`, each `{ uint64 pid = 1; optional string name = 2 }`,
//! and whose `terminate = 2` holds `repeated uint64 ids = 1` (packed).
//! A frame that does not parse as expected is passed on unchanged.

use std::{
    collections::HashSet,
    io,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
};

use ractor::ActorRef;
use ractor_cluster::{BoxRead, BoxWrite, ClusterBidiStream, NodeServerMessage};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};

use super::{ClusterConfig, Tls};

/// The name prefix that marks an activation host (so it is never announced to peers).
pub(crate) const ACTIVATION_NAME_PREFIX: &str = "overmind-activation-";

static NEXT_ACTIVATION: AtomicU64 = AtomicU64::new(0);

/// A process-unique registry name for a new activation host.
pub(crate) fn activation_name() -> String {
    format!(
        "{ACTIVATION_NAME_PREFIX}{}",
        NEXT_ACTIVATION.fetch_add(1, Ordering::Relaxed)
    )
}

// ---- the frame filter ----

fn read_varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads one length-delimited field: (field number, its bytes), or None if the message is
/// not a single such field.
fn only_field(buf: &[u8]) -> Option<(u64, &[u8])> {
    let mut at = 0;
    let tag = read_varint(buf, &mut at)?;
    if tag & 7 != 2 {
        return None;
    }
    let len = usize::try_from(read_varint(buf, &mut at)?).ok()?;
    let body = buf.get(at..at.checked_add(len)?)?;
    (at + len == buf.len()).then_some((tag >> 3, body))
}

fn wrap(field: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 12);
    write_varint(&mut out, (field << 3) | 2);
    write_varint(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

/// The `pid` of an announced actor.
fn pid_of(actor: &[u8]) -> Option<u64> {
    let mut at = 0;
    while at < actor.len() {
        let tag = read_varint(actor, &mut at)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => return read_varint(actor, &mut at),
            (_, 0) => {
                read_varint(actor, &mut at)?;
            }
            (_, 2) => {
                let len = usize::try_from(read_varint(actor, &mut at)?).ok()?;
                at = at.checked_add(len)?;
            }
            _ => return None,
        }
    }
    None
}

fn is_activation(actor: &[u8]) -> bool {
    let mut at = 0;
    while at < actor.len() {
        let Some(tag) = read_varint(actor, &mut at) else {
            return false;
        };
        match (tag >> 3, tag & 7) {
            (2, 2) => {
                let Some(len) = read_varint(actor, &mut at).and_then(|l| usize::try_from(l).ok())
                else {
                    return false;
                };
                let Some(name) = actor.get(at..at + len) else {
                    return false;
                };
                return name.starts_with(ACTIVATION_NAME_PREFIX.as_bytes());
            }
            (_, 0) => {
                if read_varint(actor, &mut at).is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    false
}

/// What to send instead of a frame's payload: `None` to send it as is, `Some(None)` to drop
/// it, `Some(Some(bytes))` to send `bytes`. `hidden` holds the pids this link kept quiet
/// about: added when an activation is dropped from a `Spawn`, removed at its `Terminate`.
fn filter(payload: &[u8], hidden: &mut HashSet<u64>) -> Option<Option<Vec<u8>>> {
    let (3, control) = only_field(payload)? else {
        return None;
    };
    match only_field(control)? {
        (1, spawn) => filter_spawn(spawn, hidden),
        (2, terminate) => filter_terminate(terminate, hidden),
        _ => None,
    }
}

/// Drops the `Terminate` of actors the peer was never told of.
fn filter_terminate(terminate: &[u8], hidden: &mut HashSet<u64>) -> Option<Option<Vec<u8>>> {
    let (1, packed) = only_field(terminate)? else {
        return None;
    };
    let mut ids = Vec::new();
    let mut at = 0;
    while at < packed.len() {
        ids.push(read_varint(packed, &mut at)?);
    }
    let before = ids.len();
    ids.retain(|id| !hidden.remove(id));
    if ids.len() == before {
        return None;
    }
    if ids.is_empty() {
        return Some(None);
    }
    let mut kept = Vec::new();
    for id in ids {
        write_varint(&mut kept, id);
    }
    Some(Some(wrap(3, &wrap(2, &wrap(1, &kept)))))
}

fn filter_spawn(spawn: &[u8], hidden: &mut HashSet<u64>) -> Option<Option<Vec<u8>>> {
    let mut kept = Vec::with_capacity(spawn.len());
    let mut dropped = 0;
    let mut at = 0;
    while at < spawn.len() {
        let start = at;
        let tag = read_varint(spawn, &mut at)?;
        if tag != (1 << 3) | 2 {
            return None;
        }
        let len = usize::try_from(read_varint(spawn, &mut at)?).ok()?;
        let actor = spawn.get(at..at.checked_add(len)?)?;
        at += len;
        if is_activation(actor) {
            dropped += 1;
            if let Some(pid) = pid_of(actor) {
                hidden.insert(pid);
            }
        } else {
            kept.extend_from_slice(&spawn[start..at]);
        }
    }
    match (dropped, kept.is_empty()) {
        (0, _) => None,
        (_, true) => Some(None),
        (_, false) => Some(Some(wrap(3, &wrap(1, &kept)))),
    }
}

/// A write half that drops activations from `Spawn` announcements. ractor_cluster writes whole
/// frames and then flushes, so frames are filtered at flush time.
struct LocalOnly {
    inner: BoxWrite,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    /// The pids of the live activations this link did not announce.
    hidden: HashSet<u64>,
}

impl LocalOnly {
    fn new(inner: BoxWrite) -> Self {
        Self {
            inner,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            hidden: HashSet::new(),
        }
    }

    /// Moves every complete frame from `input` to `output`, filtered.
    fn process(&mut self) {
        let mut at = 0;
        while self.input.len() >= at + 8 {
            let mut len = [0u8; 8];
            len.copy_from_slice(&self.input[at..at + 8]);
            let Ok(len) = usize::try_from(u64::from_be_bytes(len)) else {
                break;
            };
            let Some(end) = (at + 8).checked_add(len).filter(|e| *e <= self.input.len()) else {
                break;
            };
            let payload = &self.input[at + 8..end];
            match filter(payload, &mut self.hidden) {
                None => self.output.extend_from_slice(&self.input[at..end]),
                Some(None) => {}
                Some(Some(rewritten)) => {
                    self.output
                        .extend_from_slice(&(rewritten.len() as u64).to_be_bytes());
                    self.output.extend_from_slice(&rewritten);
                }
            }
            at = end;
        }
        self.input.drain(..at);
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.output.len() {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &self.output[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            self.written += n;
        }
        self.output.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for LocalOnly {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.input.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.process();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.process();
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

// ---- links ----

struct Link {
    read: BoxRead,
    write: BoxWrite,
    peer: String,
    local: String,
}

impl ClusterBidiStream for Link {
    fn split(self: Box<Self>) -> (BoxRead, BoxWrite) {
        (self.read, Box::new(LocalOnly::new(self.write)))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.peer.clone())
    }

    fn local_label(&self) -> Option<String> {
        Some(self.local.clone())
    }
}

fn link<S>(stream: S, peer: String, local: String) -> Box<dyn ClusterBidiStream>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    Box::new(Link {
        read: Box::new(read),
        write: Box::new(write),
        peer,
        local,
    })
}

/// Accepts peers' links until the listener is dropped.
pub(crate) async fn accept(
    listener: TcpListener,
    tls: Option<Tls>,
    server: ActorRef<NodeServerMessage>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a peer link failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let (tls, server) = (tls.clone(), server.clone());
        tokio::spawn(async move {
            let stream = match tls {
                None => link(stream, peer.to_string(), local),
                Some(tls) => match tls.acceptor.accept(stream).await {
                    Ok(s) => link(s, peer.to_string(), local),
                    Err(error) => {
                        return tracing::warn!(%peer, %error, "TLS handshake with a peer failed");
                    }
                },
            };
            let _ = server.cast(NodeServerMessage::ConnectionOpenedExternal {
                stream,
                is_server: true,
            });
        });
    }
}

/// Opens a link to the node listening at `addr`.
pub(crate) async fn dial(
    config: &ClusterConfig,
    server: &ActorRef<NodeServerMessage>,
    addr: &str,
) -> io::Result<()> {
    let dial = config.routes.get(addr).map_or(addr, String::as_str);
    let stream = TcpStream::connect(dial).await?;
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?.to_string();
    let stream = match &config.tls {
        None => link(stream, addr.to_owned(), local),
        Some(tls) => {
            let s = tls
                .connector
                .connect(tls.server_name.clone(), stream)
                .await?;
            link(s, addr.to_owned(), local)
        }
    };
    ractor_cluster::client_connect_external(server, stream)
        .await
        .map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(pid: u64, name: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(&mut out, 1 << 3);
        write_varint(&mut out, pid);
        if let Some(name) = name {
            out.extend(wrap(2, name.as_bytes()));
        }
        out
    }

    fn filter_fresh(payload: &[u8]) -> Option<Option<Vec<u8>>> {
        filter(payload, &mut HashSet::new())
    }

    fn terminate_frame(ids: &[u64]) -> Vec<u8> {
        let mut packed = Vec::new();
        for id in ids {
            write_varint(&mut packed, *id);
        }
        wrap(3, &wrap(2, &wrap(1, &packed)))
    }

    /// A stopped activation's `Terminate` goes nowhere: the peer never heard of it. Others
    /// pass, and a notice naming both is cut down to the announced ones.
    #[test]
    fn the_terminate_of_an_unannounced_activation_is_dropped() {
        let mut hidden = HashSet::new();
        let host = actor(9, Some("overmind-activation-42"));
        let router = actor(7, Some("router"));
        assert_eq!(
            filter(&spawn_frame(&[router, host]), &mut hidden),
            Some(Some(spawn_frame(&[actor(7, Some("router"))])))
        );
        assert!(hidden.contains(&9));
        assert_eq!(filter(&terminate_frame(&[7]), &mut hidden), None);
        assert_eq!(filter(&terminate_frame(&[9]), &mut hidden), Some(None));
        assert!(hidden.is_empty(), "forgotten once terminated");
        // Announced again later under the same pid? It is not hidden any more: it passes.
        assert_eq!(filter(&terminate_frame(&[9]), &mut hidden), None);
        hidden.insert(9);
        assert_eq!(
            filter(&terminate_frame(&[7, 9, 8]), &mut hidden),
            Some(Some(terminate_frame(&[7, 8])))
        );
        assert_eq!(pid_of(&actor(300, Some("x"))), Some(300));
    }

    fn spawn_frame(actors: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = actors.iter().flat_map(|a| wrap(1, a)).collect();
        wrap(3, &wrap(1, &body))
    }

    #[test]
    fn activations_are_dropped_from_spawn_announcements_and_nothing_else_changes() {
        let router = actor(7, Some("router"));
        let anonymous = actor(8, None);
        let host = actor(9, Some("overmind-activation-42"));
        // Mixed: the activation goes, the rest stays as it was.
        let frame = spawn_frame(&[router.clone(), host.clone(), anonymous.clone()]);
        assert_eq!(
            filter_fresh(&frame),
            Some(Some(spawn_frame(&[router.clone(), anonymous])))
        );
        // Only activations: the frame goes.
        assert_eq!(filter_fresh(&spawn_frame(&[host])), Some(None));
        // No activation: untouched.
        assert_eq!(filter_fresh(&spawn_frame(&[router])), None);
        // Other control messages and other frames: untouched.
        assert_eq!(filter_fresh(&wrap(3, &wrap(9, &[]))), None);
        assert_eq!(filter_fresh(&wrap(2, b"node message")), None);
        assert_eq!(filter_fresh(b"\xff\xff"), None);
    }

    #[tokio::test]
    async fn the_writer_filters_whole_frames_and_passes_the_rest() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut far, near) = tokio::io::duplex(1 << 16);
        let mut w = LocalOnly::new(Box::new(near));
        let keep = b"\x10\x01".to_vec(); // an unrelated frame
        let drop = spawn_frame(&[actor(1, Some("overmind-activation-1"))]);
        let mut bytes = Vec::new();
        for payload in [&keep, &drop, &keep] {
            bytes.extend((payload.len() as u64).to_be_bytes());
            bytes.extend(payload.iter());
        }
        w.write_all(&bytes).await.unwrap();
        w.flush().await.unwrap();
        drop_writer(w);
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        let mut want = Vec::new();
        for payload in [&keep, &keep] {
            want.extend((payload.len() as u64).to_be_bytes());
            want.extend(payload.iter());
        }
        assert_eq!(got, want);
    }

    fn drop_writer(w: LocalOnly) {
        drop(w);
    }
}
