//! Request framing checks hyper does not make (SPEC §4): a request with both `Content-Length`
//! and `Transfer-Encoding` must be refused with 400 and the connection closed. hyper follows
//! RFC 9112 instead (drops the `Content-Length`, reads the body as chunked, closes afterwards),
//! and the dropped header is invisible to the service, so the check has to see the bytes.
//!
//! [`FramingGuard`] wraps the accepted socket and watches the bytes hyper reads, following the
//! HTTP/1.1 framing just far enough to find each request head (skipping `Content-Length` and
//! chunked bodies). It counts heads and remembers the first one that was ambiguous; the accept
//! loop counts the requests hyper hands over, and request number `n` is refused when
//! `n >= first bad head`. hyper parses a head only after these bytes went through the guard, so
//! the verdict is always ready in time, also for pipelined requests.
//!
//! If the guard ever loses track of the framing (bytes that are not HTTP/1.1 as it reads it),
//! it fails closed: every later request on that connection is refused. Not for anything else:
//! head size, header count and the head deadline are hyper's (`app.rs`).
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest head the guard buffers; hyper refuses anything longer (431) before it matters.
const MAX_HEAD: usize = 64 * 1024;

/// In a request's extensions: refuse it with 400 and close the connection (`middleware::refusals` does).
#[derive(Debug, Clone, Copy)]
pub struct Refused;

/// What the accept loop reads: the index of the first refused request (`u64::MAX`: none yet).
#[derive(Debug, Default)]
pub struct Verdicts {
    first_bad: AtomicU64,
}

impl Verdicts {
    fn new() -> Self {
        Verdicts {
            first_bad: AtomicU64::new(u64::MAX),
        }
    }

    /// True when the connection's request number `n` (from 0) must be refused.
    pub fn refuses(&self, n: u64) -> bool {
        n >= self.first_bad.load(Ordering::Acquire)
    }

    fn refuse_from(&self, n: u64) {
        self.first_bad.fetch_min(n, Ordering::AcqRel);
    }
}

/// The socket, watched. Writes pass through untouched.
pub struct FramingGuard<IO> {
    io: IO,
    scanner: Scanner,
    verdicts: Arc<Verdicts>,
}

/// Wraps `io`; the returned `Verdicts` is for the connection's service.
pub fn guard<IO>(io: IO) -> (FramingGuard<IO>, Arc<Verdicts>) {
    let verdicts = Arc::new(Verdicts::new());
    (
        FramingGuard {
            io,
            scanner: Scanner::default(),
            verdicts: verdicts.clone(),
        },
        verdicts,
    )
}

impl<IO: AsyncRead + Unpin> AsyncRead for FramingGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            this.scanner.feed(&buf.filled()[before..], &this.verdicts);
        }
        res
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FramingGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[derive(Debug)]
enum State {
    /// Collecting a request head (leading empty lines skipped, as hyper does).
    Head(Vec<u8>),
    /// `n` body bytes still to skip.
    Body(u64),
    /// A chunk-size line: the size so far, and whether the extension part began.
    ChunkSize {
        size: u64,
        digits: u32,
        ext: bool,
    },
    /// `n` chunk bytes to skip, then the chunk's CRLF.
    ChunkData(u64),
    ChunkEnd {
        seen_cr: bool,
    },
    /// Trailer lines after the last chunk; `len` is the current line's length.
    Trailers {
        len: usize,
    },
    /// Framing not understood: everything from here on is refused.
    Lost,
}

#[derive(Debug)]
struct Scanner {
    state: State,
    /// Heads seen so far (the index of the next one).
    heads: u64,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Head(Vec::new()),
            heads: 0,
        }
    }
}

impl Scanner {
    fn feed(&mut self, mut bytes: &[u8], verdicts: &Verdicts) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Lost => return,
                State::Head(buf) => {
                    if buf.is_empty() {
                        let skip = bytes
                            .iter()
                            .position(|b| *b != b'\r' && *b != b'\n')
                            .unwrap_or(bytes.len());
                        bytes = &bytes[skip..];
                        if bytes.is_empty() {
                            return;
                        }
                    }
                    // Search from a little before the new bytes: the end marker may straddle.
                    let from = buf.len().saturating_sub(3);
                    buf.extend_from_slice(bytes);
                    match head_end(&buf[from..]) {
                        // Too long whether it came in one read or many: the verdict must not
                        // depend on where the reads happened to end.
                        Some(end) if from + end > MAX_HEAD => self.lose(verdicts),
                        Some(end) => {
                            let end = from + end;
                            let rest = buf.len() - end;
                            let head = std::mem::take(buf);
                            let consumed = bytes.len() - rest;
                            bytes = &bytes[consumed..];
                            self.state = self.on_head(&head[..end], verdicts);
                        }
                        None if buf.len() > MAX_HEAD => self.lose(verdicts),
                        None => return,
                    }
                }
                State::Body(n) => {
                    let take = (*n).min(bytes.len() as u64);
                    *n -= take;
                    bytes = &bytes[take as usize..];
                    if *n == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::ChunkData(n) => {
                    let take = (*n).min(bytes.len() as u64);
                    *n -= take;
                    bytes = &bytes[take as usize..];
                    if *n == 0 {
                        self.state = State::ChunkEnd { seen_cr: false };
                    }
                }
                State::ChunkEnd { seen_cr } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    match b {
                        b'\r' if !*seen_cr => *seen_cr = true,
                        b'\n' => {
                            self.state = State::ChunkSize {
                                size: 0,
                                digits: 0,
                                ext: false,
                            }
                        }
                        _ => self.lose(verdicts),
                    }
                }
                State::ChunkSize { size, digits, ext } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    match b {
                        b'\n' if *digits == 0 => self.lose(verdicts),
                        b'\n' if *size == 0 => self.state = State::Trailers { len: 0 },
                        b'\n' => self.state = State::ChunkData(*size),
                        _ if *ext => {}
                        b';' | b' ' | b'\t' | b'\r' => *ext = true,
                        _ => match (b as char).to_digit(16) {
                            Some(d) if *digits < 16 => {
                                *size = *size * 16 + u64::from(d);
                                *digits += 1;
                            }
                            _ => self.lose(verdicts),
                        },
                    }
                }
                State::Trailers { len } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    match b {
                        b'\n' if *len == 0 => self.state = State::Head(Vec::new()),
                        b'\n' => *len = 0,
                        b'\r' => {}
                        _ if *len > MAX_HEAD => self.lose(verdicts),
                        _ => *len += 1,
                    }
                }
            }
        }
    }

    /// Judges one complete head and returns how its body is framed.
    fn on_head(&mut self, head: &[u8], verdicts: &Verdicts) -> State {
        let index = self.heads;
        self.heads += 1;
        let mut lengths = Vec::new();
        let mut te_chunked = None;
        for line in head.split(|b| *b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                verdicts.refuse_from(index);
                return State::Lost;
            };
            let name = &line[..colon];
            let value = line[colon + 1..].trim_ascii();
            if name.eq_ignore_ascii_case(b"content-length") {
                lengths.push(value.to_vec());
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // The last coding of the last header decides, as in hyper.
                let last = value
                    .rsplit(|b| *b == b',')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii();
                te_chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        }
        match (te_chunked, lengths.first()) {
            (Some(_), Some(_)) => {
                // SPEC §4: ambiguous framing is refused, and the connection closes after it.
                verdicts.refuse_from(index);
                State::Lost
            }
            (Some(true), None) => State::ChunkSize {
                size: 0,
                digits: 0,
                ext: false,
            },
            (None, Some(first)) if lengths.iter().all(|l| l == first) => {
                match std::str::from_utf8(first)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    Some(0) => State::Head(Vec::new()),
                    Some(n) => State::Body(n),
                    None => {
                        verdicts.refuse_from(index);
                        State::Lost
                    }
                }
            }
            (None, None) => State::Head(Vec::new()),
            // Not chunked, or differing lengths: hyper answers 400 itself and closes.
            _ => {
                verdicts.refuse_from(index);
                State::Lost
            }
        }
    }

    fn lose(&mut self, verdicts: &Verdicts) {
        verdicts.refuse_from(self.heads);
        self.state = State::Lost;
    }
}

/// The end of a head (just past its empty line), accepting bare `\n` line ends as httparse does.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = buf[i..].iter().position(|b| *b == b'\n') {
        let nl = i + p;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns which of the first 8 requests are refused.
    fn refused(input: &[u8], step: usize) -> Vec<u64> {
        let verdicts = Verdicts::new();
        let mut s = Scanner::default();
        for piece in input.chunks(step) {
            s.feed(piece, &verdicts);
        }
        (0..8).filter(|n| verdicts.refuses(*n)).collect()
    }

    fn all_steps(input: &[u8]) -> Vec<u64> {
        let first = refused(input, input.len());
        for step in [1, 2, 3, 7] {
            assert_eq!(refused(input, step), first, "step {step}");
        }
        first
    }

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn plain_keep_alive_requests_pass() {
        let mut input = GET.to_vec();
        input.extend_from_slice(b"POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        input.extend_from_slice(
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        );
        input.extend_from_slice(b"\r\nGET /d HTTP/1.1\nHost: x\n\n");
        input.extend_from_slice(
            b"POST /e HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        );
        input.extend_from_slice(GET);
        assert_eq!(all_steps(&input), Vec::<u64>::new());
    }

    #[test]
    fn content_length_with_transfer_encoding_is_refused_in_either_order() {
        for head in [
            &b"POST /a HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
            &b"POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n"[..],
        ] {
            assert_eq!(all_steps(head), (0..8).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_smuggled_second_request_is_refused_not_the_first() {
        let mut input = GET.to_vec();
        input.extend_from_slice(b"POST /a HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n");
        assert_eq!(all_steps(&input), (1..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_body_that_looks_like_a_head_is_skipped() {
        let body = b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut input =
            format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(GET);
        assert_eq!(all_steps(&input), Vec::<u64>::new());
    }

    #[test]
    fn differing_lengths_and_bad_chunks_fail_closed() {
        let two = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
        assert_eq!(all_steps(two), (0..8).collect::<Vec<_>>());
        let bad_chunk = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(all_steps(bad_chunk), (1..8).collect::<Vec<_>>());
    }
}

/// Property tests (issue #15): the scanner's verdicts do not depend on how the bytes arrive.
#[cfg(test)]
mod proptests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// What the connection's service would learn, plus where the scanner stands.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        first_bad: u64,
        heads: u64,
        lost: bool,
    }

    /// Feeds `input` cut at `cuts` (taken modulo its length, in any order; empty pieces too).
    fn feed_cut(input: &[u8], cuts: &[usize]) -> Outcome {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(input.len());
        let verdicts = Verdicts::new();
        let mut s = Scanner::default();
        let mut at = 0;
        for cut in cuts {
            s.feed(&input[at..cut], &verdicts);
            at = cut;
        }
        outcome(&s, &verdicts)
    }

    fn feed_bytewise(input: &[u8]) -> Outcome {
        let verdicts = Verdicts::new();
        let mut s = Scanner::default();
        for b in input {
            s.feed(std::slice::from_ref(b), &verdicts);
        }
        outcome(&s, &verdicts)
    }

    fn outcome(s: &Scanner, verdicts: &Verdicts) -> Outcome {
        Outcome {
            first_bad: verdicts.first_bad.load(Ordering::Acquire),
            heads: s.heads,
            lost: matches!(s.state, State::Lost),
        }
    }

    fn eol() -> impl Strategy<Value = &'static str> {
        prop_oneof![3 => Just("\r\n"), 1 => Just("\n")]
    }

    fn request_line() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("GET /a HTTP/1.1"),
            Just("POST /api/v1/reservations HTTP/1.1"),
            Just("PUT /x?y=1 HTTP/1.1"),
        ]
    }

    /// Headers that say nothing about framing (names too short to be CL or TE by chance).
    fn filler() -> impl Strategy<Value = Vec<String>> {
        vec(
            ("[A-Za-z-]{1,10}", "[ a-zA-Z0-9,;=/]{0,12}").prop_map(|(n, v)| format!("{n}:{v}")),
            0..3,
        )
    }

    fn content_length_name() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("Content-Length"),
            Just("content-length"),
            Just("CONTENT-LENGTH")
        ]
    }

    fn transfer_encoding_name() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("Transfer-Encoding"),
            Just("transfer-encoding"),
            Just("TRANSFER-ENCODING")
        ]
    }

    /// Any `Transfer-Encoding` value, valid or not.
    fn any_te_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("chunked".to_string()),
            Just("Chunked".to_string()),
            Just("gzip, chunked".to_string()),
            Just("chunked, gzip".to_string()),
            Just("gzip".to_string()),
            Just(String::new()),
            "[ a-z,]{0,16}",
        ]
    }

    /// Any `Content-Length` value, valid or not.
    fn any_cl_value() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u64..100).prop_map(|n| n.to_string()),
            Just("+5".to_string()),
            Just("-1".to_string()),
            Just("99999999999999999999999".to_string()),
            Just(String::new()),
            "[ 0-9a-f,]{0,8}",
        ]
    }

    /// One well-framed request: no body, a `Content-Length` body, or a chunked body with
    /// extensions and trailers; with leading empty lines and either line end.
    fn valid_request() -> impl Strategy<Value = Vec<u8>> {
        (
            0usize..3,
            request_line(),
            eol(),
            filler(),
            0u8..3,
            vec(any::<u8>(), 0..40),
            vec(vec(any::<u8>(), 1..20), 0..4),
            (any::<bool>(), any::<bool>(), any::<bool>()),
            (content_length_name(), transfer_encoding_name()),
        )
            .prop_map(
                |(blank, line, eol, filler, kind, body, chunks, flags, names)| {
                    let (twice, ext, upper) = flags;
                    let (cl, te) = names;
                    let mut out = eol.repeat(blank).into_bytes();
                    out.extend_from_slice(format!("{line}{eol}").as_bytes());
                    for h in &filler {
                        out.extend_from_slice(format!("{h}{eol}").as_bytes());
                    }
                    match kind {
                        0 => out.extend_from_slice(eol.as_bytes()),
                        1 => {
                            let n = body.len();
                            out.extend_from_slice(format!("{cl}: {n}{eol}").as_bytes());
                            if twice {
                                // The same length twice is allowed (RFC 9110 §8.6).
                                out.extend_from_slice(format!("{cl}:{n} {eol}").as_bytes());
                            }
                            out.extend_from_slice(eol.as_bytes());
                            out.extend_from_slice(&body);
                        }
                        _ => {
                            out.extend_from_slice(format!("{te}: chunked{eol}{eol}").as_bytes());
                            for chunk in chunks {
                                let size = if upper {
                                    format!("{:X}", chunk.len())
                                } else {
                                    format!("{:x}", chunk.len())
                                };
                                let ext = if ext { ";name=value" } else { "" };
                                out.extend_from_slice(format!("{size}{ext}{eol}").as_bytes());
                                out.extend_from_slice(&chunk);
                                out.extend_from_slice(eol.as_bytes());
                            }
                            out.extend_from_slice(format!("0{eol}").as_bytes());
                            if twice {
                                out.extend_from_slice(format!("X-Trailer: 1{eol}").as_bytes());
                            }
                            out.extend_from_slice(eol.as_bytes());
                        }
                    }
                    out
                },
            )
    }

    /// A head the spec refuses: `Content-Length` with `Transfer-Encoding` (either order, any
    /// values), or two different `Content-Length`s; then whatever follows.
    fn ambiguous_head() -> impl Strategy<Value = Vec<u8>> {
        let both = (
            content_length_name(),
            any_cl_value(),
            transfer_encoding_name(),
            any_te_value(),
            any::<bool>(),
        )
            .prop_map(|(cl, clv, te, tev, te_first)| {
                let cl = format!("{cl}: {clv}");
                let te = format!("{te}: {tev}");
                if te_first { vec![te, cl] } else { vec![cl, te] }
            });
        let two_lengths = (content_length_name(), 0u64..1000, 1u64..1000)
            .prop_map(|(cl, a, d)| vec![format!("{cl}: {a}"), format!("{cl}: {}", a + d)]);
        (
            request_line(),
            eol(),
            filler(),
            prop_oneof![both, two_lengths],
            filler(),
            vec(any::<u8>(), 0..40),
        )
            .prop_map(|(line, eol, before, bad, after, tail)| {
                let mut lines = vec![line.to_string()];
                lines.extend(before);
                lines.extend(bad);
                lines.extend(after);
                let mut out = Vec::new();
                for l in lines {
                    out.extend_from_slice(format!("{l}{eol}").as_bytes());
                }
                out.extend_from_slice(eol.as_bytes());
                out.extend_from_slice(&tail);
                out
            })
    }

    /// Mostly-valid traffic: requests, ambiguous heads and junk, pipelined in any order.
    fn traffic() -> impl Strategy<Value = Vec<u8>> {
        vec(
            prop_oneof![
                6 => valid_request(),
                2 => ambiguous_head(),
                1 => vec(any::<u8>(), 0..30),
                1 => vec(proptest::sample::select(b"\r\n:0a;".to_vec()), 0..12),
            ],
            0..8,
        )
        .prop_map(|parts| parts.concat())
    }

    fn cuts() -> impl Strategy<Value = Vec<usize>> {
        vec(any::<usize>(), 0..12)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any split of any mostly-valid byte stream gives the verdicts of the whole stream.
        #[test]
        fn any_split_of_traffic_gives_the_whole_verdict(input in traffic(), cuts in cuts()) {
            let whole = feed_cut(&input, &[]);
            prop_assert_eq!(&feed_cut(&input, &cuts), &whole);
            prop_assert_eq!(&feed_bytewise(&input), &whole);
        }

        /// The same for arbitrary bytes; and nothing panics.
        #[test]
        fn any_split_of_any_bytes_gives_the_whole_verdict(
            input in vec(any::<u8>(), 0..600),
            cuts in cuts(),
        ) {
            let whole = feed_cut(&input, &[]);
            prop_assert_eq!(&feed_cut(&input, &cuts), &whole);
            prop_assert_eq!(&feed_bytewise(&input), &whole);
        }

        /// Well-framed pipelined requests are all let through, each head counted once, and the
        /// scanner ends waiting for the next head.
        #[test]
        fn well_framed_requests_all_pass(reqs in vec(valid_request(), 0..8), cuts in cuts()) {
            let input = reqs.concat();
            let got = feed_cut(&input, &cuts);
            let heads = reqs.len() as u64;
            prop_assert_eq!(got, Outcome { first_bad: u64::MAX, heads, lost: false });
        }

        /// After any number of well-framed requests, a head with both framings or with two
        /// different lengths is refused: that request and every later one, none before.
        #[test]
        fn an_ambiguous_head_is_refused_from_its_index_on(
            reqs in vec(valid_request(), 0..6),
            bad in ambiguous_head(),
            rest in traffic(),
            cuts in cuts(),
        ) {
            let mut input = reqs.concat();
            input.extend_from_slice(&bad);
            input.extend_from_slice(&rest);
            let got = feed_cut(&input, &cuts);
            let k = reqs.len() as u64;
            prop_assert_eq!(got, Outcome { first_bad: k, heads: k + 1, lost: true });
        }

        /// Heads around the size limit: the verdict does not depend on where the reads end.
        #[test]
        fn heads_near_the_size_limit_give_the_whole_verdict(
            pad in (MAX_HEAD - 40)..(MAX_HEAD + 40),
            cuts in vec((MAX_HEAD - 40)..(MAX_HEAD + 80), 0..4),
        ) {
            let x = "a".repeat(pad);
            let mut input = format!("GET / HTTP/1.1\r\nX: {x}\r\n\r\n").into_bytes();
            input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            let whole = feed_cut(&input, &[]);
            prop_assert_eq!(&feed_cut(&input, &cuts), &whole);
            // 16 + 3 + 4 bytes around the padding: longer than the limit is refused.
            prop_assert_eq!(whole.lost, pad + 23 > MAX_HEAD);
        }
    }
}
