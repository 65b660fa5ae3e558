//! A real gRPC server and client for end-to-end tests (tonic, without protobuf code
//! generation: messages are raw bytes through `RawCodec`).
//!
//! `GrpcBackend` serves prior-knowledge HTTP/2 (h2c) with hyper and tonic's server
//! machinery: `/test.Echo/Unary` answers `BACKEND:MESSAGE`; `/test.Echo/Count` streams
//! `BACKEND:0`, `BACKEND:1`, ... (as many as the request's number, 50 ms apart) and
//! ends with the status the test set (`grpc-status` and `grpc-message` in trailers);
//! any other path gets a plain `200` naming the backend and the HTTP version it
//! arrived in. It counts the connections it accepted; `kill` drops the listener and
//! every open connection at once, mid-stream if one is streaming.
//!
//! `GrpcBackend::start_web` serves the same calls behind tonic-web's gRPC-Web
//! translation, over HTTP/1.1 and h2c both (hyper's automatic server): gRPC-Web calls
//! (`application/grpc-web`, `-web-text`) get their status in the body's trailer frame.

use bytes::{Buf, BufMut, Bytes};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// Messages as they are: bytes in, bytes out.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type CountStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Bytes, Status>> + Send>>;

/// `/test.Echo/Unary`.
struct Unary {
    name: Arc<str>,
}

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let name = self.name.clone();
        Box::pin(async move {
            let mut out = format!("{name}:").into_bytes();
            out.extend_from_slice(request.get_ref());
            Ok(tonic::Response::new(Bytes::from(out)))
        })
    }
}

/// `/test.Echo/Count`.
struct Count {
    name: Arc<str>,
    end: Status,
}

impl tonic::server::ServerStreamingService<Bytes> for Count {
    type Response = Bytes;
    type ResponseStream = CountStream;
    type Future = BoxFuture<Result<tonic::Response<CountStream>, Status>>;
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let name = self.name.clone();
        let end = self.end.clone();
        Box::pin(async move {
            let n: usize = std::str::from_utf8(request.get_ref())
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Status::invalid_argument("not a number"))?;
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                for i in 0..n {
                    let item = Bytes::from(format!("{name}:{i}"));
                    if tx.send(Ok(item)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if end.code() != Code::Ok {
                    let _ = tx.send(Err(end)).await;
                }
            });
            let stream: CountStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
            Ok(tonic::Response::new(stream))
        })
    }
}

/// The calls as a tower service, for tonic-web to wrap.
#[derive(Clone)]
struct Echo {
    name: Arc<str>,
    end: Status,
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = Reply;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Reply, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let (name, end) = (self.name.clone(), self.end.clone());
        Box::pin(async move { Ok(serve(req, name, end).await) })
    }
}

/// A gRPC backend on a loopback port.
pub struct GrpcBackend {
    pub addr: String,
    pub name: Arc<str>,
    accepted: Arc<AtomicUsize>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

type Reply = http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Status>>;

async fn serve<B>(req: http::Request<B>, name: Arc<str>, end: Status) -> Reply
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let path = req.uri().path().to_string();
    let mut grpc = tonic::server::Grpc::new(RawCodec);
    let resp = match path.as_str() {
        "/test.Echo/Unary" => grpc.unary(Unary { name }, req).await,
        "/test.Echo/Count" => grpc.server_streaming(Count { name, end }, req).await,
        _ => {
            let text = format!("{name} over {:?} at {path}", req.version());
            let body = Full::new(Bytes::from(text)).map_err(|never| match never {});
            return http::Response::new(body.boxed_unsync());
        }
    };
    resp.map(|b| b.boxed_unsync())
}

impl GrpcBackend {
    /// Starts backend `name`; its streams end with `end` (`Status::ok("")`: no error).
    pub async fn start(name: &str, end: Status) -> GrpcBackend {
        GrpcBackend::listen(name, move |tcp, name| {
            let end = end.clone();
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let (name, end) = (name.clone(), end.clone());
                async move { Ok::<_, std::convert::Infallible>(serve(req, name, end).await) }
            });
            async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            }
        })
        .await
    }

    /// Starts backend `name` behind tonic-web, for HTTP/1.1 and h2c clients.
    pub async fn start_web(name: &str, end: Status) -> GrpcBackend {
        GrpcBackend::listen(name, move |tcp, name| {
            let echo = Echo {
                name,
                end: end.clone(),
            };
            let web = tower_layer::Layer::layer(&tonic_web::GrpcWebLayer::new(), echo);
            let svc = hyper_util::service::TowerToHyperService::new(web);
            async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            }
        })
        .await
    }

    /// Listens on a loopback port and serves each connection with `serve_conn`.
    async fn listen<F, C>(name: &str, serve_conn: F) -> GrpcBackend
    where
        F: Fn(TcpStream, Arc<str>) -> C + Send + 'static,
        C: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let name: Arc<str> = Arc::from(name);
        let accepted = Arc::new(AtomicUsize::new(0));
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let (n, a, t) = (name.clone(), accepted.clone(), tasks.clone());
        let accept = async move {
            while let Ok((tcp, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let conn = serve_conn(tcp, n.clone());
                t.lock().expect("tasks").spawn(conn);
            }
        };
        tasks.lock().expect("tasks").spawn(accept);
        GrpcBackend {
            addr,
            name,
            accepted,
            tasks,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection now (a backend that dies).
    pub fn kill(&self) {
        self.tasks.lock().expect("tasks").abort_all();
    }
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tonic client on one HTTP/2 connection to `url` (`http://` for h2c; `https://`
/// verifying `a.test` against `ca_pem`).
pub async fn client(
    url: &str,
    ca_pem: Option<&str>,
) -> tonic::client::Grpc<tonic::transport::Channel> {
    let mut endpoint =
        tonic::transport::Endpoint::from_shared(url.to_string()).expect("endpoint url");
    if let Some(pem) = ca_pem {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(pem))
            .domain_name("a.test");
        endpoint = endpoint.tls_config(tls).expect("client TLS config");
    }
    let channel = endpoint.connect().await.expect("connect to fulcrum");
    tonic::client::Grpc::new(channel)
}

/// One unary call: the answer's text, or the status.
pub async fn unary(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    message: &str,
) -> Result<String, Status> {
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static("/test.Echo/Unary");
    let req = tonic::Request::new(Bytes::from(message.to_string()));
    let resp = client.unary(req, path, RawCodec).await?;
    Ok(String::from_utf8_lossy(resp.get_ref()).into_owned())
}

/// One server-streaming call for `n` messages: those that came, then how it ended
/// (the status from the trailers; `Ok` when `grpc-status` was 0).
pub async fn count(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    n: usize,
) -> (Vec<String>, Status) {
    if let Err(e) = client.ready().await {
        return (Vec::new(), Status::unavailable(e.to_string()));
    }
    let path = http::uri::PathAndQuery::from_static("/test.Echo/Count");
    let req = tonic::Request::new(Bytes::from(n.to_string()));
    let mut stream = match client.server_streaming(req, path, RawCodec).await {
        Ok(resp) => resp.into_inner(),
        Err(status) => return (Vec::new(), status),
    };
    let mut got = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(m)) => got.push(String::from_utf8_lossy(&m).into_owned()),
            Ok(None) => return (got, Status::ok("")),
            Err(status) => return (got, status),
        }
    }
}

/// One request on a new HTTP/1.1 connection (`head` then `body`, which should say
/// `Connection: close`): the raw answer, read to the connection's end (10 s at most).
pub async fn h1_exchange(addr: &str, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(body).await.expect("body");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("answered within 10 s")
        .expect("read");
    String::from_utf8_lossy(&got).into_owned()
}
