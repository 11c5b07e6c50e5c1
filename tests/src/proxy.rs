//! A small TCP proxy for fault tests: sits between the worker and RabbitMQ or Postgres and can
//! cut every connection, refuse new ones, or stall the traffic. The shared services are never
//! restarted: only the worker's own connections are hurt.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Default)]
struct State {
    refuse: AtomicBool,
    stalled: AtomicBool,
    conns: Mutex<Vec<AbortHandle>>,
    accepted: std::sync::atomic::AtomicU64,
}

pub struct TcpProxy {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: AbortHandle,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let s = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if s.refuse.load(Ordering::SeqCst) {
                    let _ = inbound.shutdown().await;
                    continue;
                }
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let st = s.clone();
                let task = tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    pipe(inbound, outbound, st).await;
                });
                s.conns.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        TcpProxy {
            addr,
            state,
            accept,
        }
    }

    /// Breaks every open connection (the peers see a reset or EOF).
    pub fn cut(&self) {
        for c in self.state.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// While true, new connections are closed at once.
    pub fn refuse(&self, on: bool) {
        self.state.refuse.store(on, Ordering::SeqCst);
    }

    /// While true, no byte is forwarded in either direction.
    pub fn stall(&self, on: bool) {
        self.state.stalled.store(on, Ordering::SeqCst);
    }

    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).unwrap();
        u.set_host(Some("127.0.0.1")).unwrap();
        u.set_port(Some(self.addr.port())).unwrap();
        u.to_string()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn pipe(a: TcpStream, b: TcpStream, st: Arc<State>) {
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let s1 = st.clone();
    let up = async move { copy(&mut ar, &mut bw, &s1).await };
    let down = async move { copy(&mut br, &mut aw, &st).await };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

async fn copy(
    r: &mut tokio::net::tcp::OwnedReadHalf,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    st: &State,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while st.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The socket address of a service URL (postgres://, amqp://).
pub fn target_of(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).unwrap();
    let host = u.host_str().unwrap_or("127.0.0.1");
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", u.port().unwrap()).parse().unwrap()
}
