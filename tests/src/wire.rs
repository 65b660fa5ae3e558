//! Byte-exact HTTP/1.1 framing over a raw `TcpStream`, for tests that must see the wire.
//!
//! `WireConn` keeps its own read buffer, so bytes that arrive together (pipelined
//! requests, a response followed by the next one) are never lost between messages.
//! It reads request and response heads, and bodies framed by `Content-Length`,
//! `Transfer-Encoding: chunked` (trailers kept) or the close of the connection, as
//! RFC 9112 §6.3 orders them. Every read is bounded by the connection's timeout;
//! a timeout is an `io::ErrorKind::TimedOut` error. Parsing is deliberately strict
//! about the start line and framing and lenient about everything else.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound of a message head (request or status line plus header fields).
const MAX_HEAD: usize = 64 * 1024;
/// Upper bound of a body this module will buffer.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A start line and its header fields, in arrival order.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).into_iter().next()
    }

    /// Every value of header `name`, one entry per field line.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Whether a comma-separated header (e.g. `Connection`) lists `token`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Status code of a response head (0 when the start line is not a status line).
    pub fn status(&self) -> u16 {
        self.start_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Method of a request head.
    pub fn method(&self) -> &str {
        self.start_line.split(' ').next().unwrap_or("")
    }

    /// Request target of a request head.
    pub fn target(&self) -> &str {
        self.start_line.split(' ').nth(1).unwrap_or("")
    }

    /// Protocol version of either kind of head (`HTTP/1.1`, `HTTP/1.0`).
    pub fn version(&self) -> &str {
        if self.start_line.starts_with("HTTP/") {
            self.start_line.split(' ').next().unwrap_or("")
        } else {
            self.start_line.rsplit(' ').next().unwrap_or("")
        }
    }
}

/// How a message body was delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body by definition (HEAD, 1xx, 204, 304, or a request without a length).
    Empty,
    Length(usize),
    Chunked,
    /// Read until the peer closed the connection.
    Close,
}

/// One complete message.
#[derive(Debug, Clone)]
pub struct Message {
    pub head: Head,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub framing: Framing,
}

impl Message {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A connection (TCP unless said otherwise, e.g. TLS) with a read buffer and a
/// per-read timeout.
pub struct WireConn<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
    pub timeout: Duration,
}

impl WireConn {
    /// Connects to `addr` with a 5 s timeout per read.
    pub async fn connect(addr: &str) -> io::Result<WireConn> {
        Ok(WireConn::new(
            TcpStream::connect(addr).await?,
            Duration::from_secs(5),
        ))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WireConn<S> {
    pub fn new(stream: S, timeout: Duration) -> WireConn<S> {
        WireConn {
            stream,
            buf: Vec::new(),
            timeout,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        tokio::time::timeout(self.timeout * 4, self.stream.write_all(bytes))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
    }

    /// One read into the buffer; Ok(0) at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timed out"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Whether the peer closes the connection within `wait` (unread bytes count as
    /// "not closed"). A reset counts as closed.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut chunk = [0u8; 1024];
        matches!(
            tokio::time::timeout(wait, self.stream.read(&mut chunk)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    /// Takes one CRLF-terminated line (without the CRLF), reading as needed.
    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).take(i).collect();
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("line too long"));
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in line"));
            }
        }
    }

    /// Reads a head; `Ok(None)` when the peer closed before sending a byte of it.
    pub async fn read_head(&mut self) -> io::Result<Option<Head>> {
        while self.buf.is_empty() {
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
        let start_line = self.line().await?;
        let mut head = Head {
            start_line,
            headers: Vec::new(),
        };
        self.read_fields(&mut head.headers).await?;
        Ok(Some(head))
    }

    /// Header (or trailer) field lines up to the empty line.
    async fn read_fields(&mut self, into: &mut Vec<(String, String)>) -> io::Result<()> {
        for _ in 0..1000 {
            let line = self.line().await?;
            if line.is_empty() {
                return Ok(());
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("field line without colon: {line:?}")))?;
            into.push((k.to_string(), v.trim().to_string()));
        }
        Err(bad("too many field lines"))
    }

    async fn read_exact_body(&mut self, len: usize) -> io::Result<Vec<u8>> {
        if len > MAX_BODY {
            return Err(bad("body too large"));
        }
        while self.buf.len() < len {
            if self.fill().await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in body"));
            }
        }
        Ok(self.buf.drain(..len).collect())
    }

    async fn read_chunked(&mut self) -> io::Result<(Vec<u8>, Vec<(String, String)>)> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size, 16).map_err(|_| bad(format!("chunk size {line:?}")))?;
            if size == 0 {
                let mut trailers = Vec::new();
                self.read_fields(&mut trailers).await?;
                return Ok((body, trailers));
            }
            if body.len() + size > MAX_BODY {
                return Err(bad("chunked body too large"));
            }
            body.extend(self.read_exact_body(size).await?);
            if !self.line().await?.is_empty() {
                return Err(bad("chunk data not followed by CRLF"));
            }
        }
    }

    async fn read_to_eof(&mut self) -> io::Result<Vec<u8>> {
        while self.fill().await? != 0 {
            if self.buf.len() > MAX_BODY {
                return Err(bad("close-delimited body too large"));
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads a body framed per `framing`.
    pub async fn read_body(&mut self, head: Head, framing: Framing) -> io::Result<Message> {
        let (body, trailers) = match framing {
            Framing::Empty => (Vec::new(), Vec::new()),
            Framing::Length(n) => (self.read_exact_body(n).await?, Vec::new()),
            Framing::Chunked => self.read_chunked().await?,
            Framing::Close => (self.read_to_eof().await?, Vec::new()),
        };
        Ok(Message {
            head,
            body,
            trailers,
            framing,
        })
    }

    /// Reads one response (a 1xx comes back as its own bodiless message).
    /// `to_head` says the request was HEAD, so the response has no body.
    pub async fn read_response(&mut self, to_head: bool) -> io::Result<Message> {
        let head = self
            .read_head()
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed, no response"))?;
        if !head.start_line.starts_with("HTTP/1.") || head.status() < 100 {
            return Err(bad(format!("not a status line: {:?}", head.start_line)));
        }
        let framing = response_framing(&head, to_head)?;
        self.read_body(head, framing).await
    }

    /// Reads responses until a final (non-1xx) one; returns it.
    pub async fn read_final_response(&mut self, to_head: bool) -> io::Result<Message> {
        for _ in 0..10 {
            let msg = self.read_response(to_head).await?;
            if msg.head.status() >= 200 {
                return Ok(msg);
            }
        }
        Err(bad("too many interim responses"))
    }
}

/// Body framing of a response per RFC 9112 §6.3.
pub fn response_framing(head: &Head, to_head: bool) -> io::Result<Framing> {
    let status = head.status();
    if to_head || status < 200 || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    if let Some(te) = head.get_all("transfer-encoding").last() {
        let last = te.rsplit(',').next().unwrap_or("").trim();
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    match content_length(head)? {
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::Close),
    }
}

/// Body framing of a request per RFC 9112 §6.3 (chunked wins over a length).
pub fn request_framing(head: &Head) -> io::Result<Framing> {
    if head.has_token("transfer-encoding", "chunked") {
        return Ok(Framing::Chunked);
    }
    match content_length(head)? {
        Some(0) | None => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
    }
}

/// The one `Content-Length` of a head; differing values are an error.
fn content_length(head: &Head) -> io::Result<Option<usize>> {
    let mut found = None;
    for v in head.get_all("content-length") {
        for part in v.split(',') {
            let n: usize = part
                .trim()
                .parse()
                .map_err(|_| bad(format!("content-length {v:?}")))?;
            if found.is_some_and(|f| f != n) {
                return Err(bad("conflicting content-length"));
            }
            found = Some(n);
        }
    }
    Ok(found)
}
