//! DNS answers, parsed one bounded step at a time: the same code runs in the kernel (one
//! `bpf_loop` iteration per [`DnsParser::step`], see `ringfence-ebpf/src/dns.rs`) and in
//! userspace (the fuzzer, the tests, the agent's name hashing), so what is fuzzed is what runs.
//!
//! A step does a constant amount of work and reads the message only through [`byte`], which
//! masks the offset into the fixed [`DNS_BUF`]-byte buffer (the verifier's bound) after the
//! parser has checked it against the message length (the semantic bound). Every step moves
//! forward, so a message is done in at most [`MAX_DNS_STEPS`] steps whatever it holds.
//!
//! What it yields, in order: one [`STEP_SUFFIX`] per label start of the question name (from the
//! shortest suffix to the whole name, `exact` set on the last), hashed with [`name_hash`] over
//! the lowercased wire form; [`STEP_NAME_DONE`]; then one [`STEP_ANSWER`] per A (class IN,
//! 4 bytes) or AAAA (16 bytes) record of the answer section, whatever its owner name (CNAME
//! chains need no name following: the resolver put the whole chain in the answer).
//! A message that is not a response to one standard IN question, or has a non-zero RCODE,
//! ends before any of that; a malformed one ends with [`STEP_BAD`] (answers already yielded
//! were well-formed records and stay yielded).

/// Bytes of a DNS message the kernel copies and parses (a power of two); the rest of a longer
/// message is not looked at.
pub const DNS_BUF: usize = 4096;
const MASK: usize = DNS_BUF - 1;
/// A name in wire form is at most 255 bytes (with its terminating zero).
pub const MAX_NAME: usize = 256;
/// Answer records looked at per message.
pub const MAX_ANSWERS: u32 = 64;
/// An upper bound of the steps of any message: header, question name (a byte per step),
/// question tail, hash (a byte per step), answers (a label per step, at most 128 labels per
/// name, plus the fixed part).
pub const MAX_DNS_STEPS: u32 = 1 + 2 * MAX_NAME as u32 + 1 + MAX_NAME as u32 + MAX_ANSWERS * 130 + 2;

/// Step results.
pub const STEP_MORE: u32 = 0;
/// `hash` holds the hash of a suffix of the question name starting at a label; `exact` is 1 when
/// the suffix is the whole name.
pub const STEP_SUFFIX: u32 = 1;
/// Every suffix was yielded; answers follow.
pub const STEP_NAME_DONE: u32 = 2;
/// `family` (4 or 6), `addr` and `ttl` hold one answered address.
pub const STEP_ANSWER: u32 = 3;
/// Nothing more to learn.
pub const STEP_END: u32 = 4;
/// The message is malformed.
pub const STEP_BAD: u32 = 5;

const ST_HEADER: u32 = 0;
const ST_QLABEL: u32 = 1;
const ST_QBYTES: u32 = 2;
const ST_QTAIL: u32 = 3;
const ST_HASH: u32 = 4;
const ST_RR_NAME: u32 = 5;
const ST_RR_FIXED: u32 = 6;
const ST_DONE: u32 = 7;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;
const HASH_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One byte of the hash (FNV-1a, fed from the end of the name towards its start, so every
/// suffix's hash is a prefix of the computation).
#[inline(always)]
const fn hash_byte(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(HASH_PRIME)
}

/// ASCII lowercase (DNS names compare case-insensitively; other bytes are themselves).
#[inline(always)]
pub const fn lower(b: u8) -> u8 {
    if b.is_ascii_uppercase() {
        b + 32
    } else {
        b
    }
}

/// The hash of a name (or a suffix of one) in wire form, lowercased: what the kernel computes
/// for the question and the agent for a policy's names.
pub fn name_hash(wire: &[u8]) -> u64 {
    wire.iter().rev().fold(HASH_SEED, |h, &b| hash_byte(h, lower(b)))
}

/// The byte at `pos` of the message buffer (the mask is the verifier's bound; callers have
/// checked `pos` against the message length).
#[inline(always)]
fn byte(msg: &[u8; DNS_BUF], pos: u32) -> u8 {
    msg[pos as usize & MASK]
}

#[inline(always)]
fn u16_at(msg: &[u8; DNS_BUF], pos: u32) -> u16 {
    u16::from_be_bytes([byte(msg, pos), byte(msg, pos + 1)])
}

/// The parser's state (kept in a per-CPU map in the kernel: too large for its stack).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DnsParser {
    pub msg_len: u32,
    pos: u32,
    state: u32,
    /// Bytes left of the current question label.
    label_left: u32,
    name_len: u32,
    hash_pos: u32,
    answers_left: u32,
    /// Set with [`STEP_SUFFIX`].
    pub exact: u32,
    pub hash: u64,
    /// Set with [`STEP_ANSWER`].
    pub family: u32,
    pub ttl: u32,
    pub addr: [u8; 16],
    /// Bit `i`: a label of the question name starts at `name[i]`.
    starts: [u8; MAX_NAME / 8],
    /// The question name, lowercased wire form.
    name: [u8; MAX_NAME],
}

impl DnsParser {
    pub const fn new() -> Self {
        Self {
            msg_len: 0,
            pos: 0,
            state: ST_DONE,
            label_left: 0,
            name_len: 0,
            hash_pos: 0,
            answers_left: 0,
            exact: 0,
            hash: 0,
            family: 0,
            ttl: 0,
            addr: [0; 16],
            starts: [0; MAX_NAME / 8],
            name: [0; MAX_NAME],
        }
    }

    /// Starts on a message of `msg_len` bytes (at most [`DNS_BUF`] are looked at).
    #[inline(always)]
    pub fn start(&mut self, msg_len: u32) {
        self.msg_len = if msg_len > DNS_BUF as u32 { DNS_BUF as u32 } else { msg_len };
        self.pos = 0;
        self.state = ST_HEADER;
        self.name_len = 0;
        self.starts = [0; MAX_NAME / 8];
    }

    /// One step (see the module documentation for what it yields).
    #[inline(always)]
    pub fn step(&mut self, msg: &[u8; DNS_BUF]) -> u32 {
        match self.state {
            ST_HEADER => self.header(msg),
            ST_QLABEL => self.qlabel(msg),
            ST_QBYTES => self.qbyte(msg),
            ST_QTAIL => self.qtail(msg),
            ST_HASH => self.hash_step(),
            ST_RR_NAME => self.rr_name(msg),
            ST_RR_FIXED => self.rr_fixed(msg),
            _ => STEP_END,
        }
    }

    #[inline(always)]
    fn end(&mut self, result: u32) -> u32 {
        self.state = ST_DONE;
        result
    }

    #[inline(always)]
    fn header(&mut self, msg: &[u8; DNS_BUF]) -> u32 {
        if self.msg_len < 12 {
            return self.end(STEP_BAD);
        }
        let flags = u16_at(msg, 2);
        let response = flags & 0x8000 != 0;
        let opcode = (flags >> 11) & 0xf;
        let rcode = flags & 0xf;
        if !response || opcode != 0 || rcode != 0 || u16_at(msg, 4) != 1 {
            return self.end(STEP_END);
        }
        let an = u16_at(msg, 6) as u32;
        self.answers_left = if an > MAX_ANSWERS { MAX_ANSWERS } else { an };
        self.pos = 12;
        self.state = ST_QLABEL;
        STEP_MORE
    }

    #[inline(always)]
    fn push_name(&mut self, b: u8) {
        self.name[self.name_len as usize & (MAX_NAME - 1)] = b;
        self.name_len += 1;
    }

    #[inline(always)]
    fn qlabel(&mut self, msg: &[u8; DNS_BUF]) -> u32 {
        if self.pos >= self.msg_len {
            return self.end(STEP_BAD);
        }
        let len = byte(msg, self.pos) as u32;
        self.pos += 1;
        if len == 0 {
            self.push_name(0);
            self.state = ST_QTAIL;
            return STEP_MORE;
        }
        // Compression pointers (and the reserved 0x40/0x80 forms) have no place in a question
        // that starts the message; a name is at most 255 bytes with its terminating zero.
        if len > 63 || self.name_len + len + 2 > MAX_NAME as u32 - 1 {
            return self.end(STEP_BAD);
        }
        let at = self.name_len as usize & (MAX_NAME - 1);
        self.starts[at / 8] |= 1 << (at % 8);
        self.push_name(len as u8);
        self.label_left = len;
        self.state = ST_QBYTES;
        STEP_MORE
    }

    #[inline(always)]
    fn qbyte(&mut self, msg: &[u8; DNS_BUF]) -> u32 {
        if self.pos >= self.msg_len {
            return self.end(STEP_BAD);
        }
        self.push_name(lower(byte(msg, self.pos)));
        self.pos += 1;
        self.label_left -= 1;
        if self.label_left == 0 {
            self.state = ST_QLABEL;
        }
        STEP_MORE
    }

    #[inline(always)]
    fn qtail(&mut self, msg: &[u8; DNS_BUF]) -> u32 {
        if self.pos + 4 > self.msg_len {
            return self.end(STEP_BAD);
        }
        if u16_at(msg, self.pos + 2) != CLASS_IN {
            return self.end(STEP_END);
        }
        self.pos += 4;
        self.hash = HASH_SEED;
        self.hash_pos = self.name_len;
        self.state = ST_HASH;
        STEP_MORE
    }

    #[inline(always)]
    fn hash_step(&mut self) -> u32 {
        if self.hash_pos == 0 {
            self.state = ST_RR_NAME;
            return STEP_NAME_DONE;
        }
        self.hash_pos -= 1;
        let at = self.hash_pos as usize & (MAX_NAME - 1);
        self.hash = hash_byte(self.hash, self.name[at]);
        if self.starts[at / 8] & (1 << (at % 8)) != 0 {
            self.exact = (self.hash_pos == 0) as u32;
            return STEP_SUFFIX;
        }
        STEP_MORE
    }

    /// Skips one label (or the terminating zero, or a compression pointer) of a record's name.
    #[inline(always)]
    fn rr_name(&mut self, msg: &[u8; DNS_BUF]) -> u32 {
        if self.answers_left == 0 {
            return self.end(STEP_END);
        }
        if self.pos >= self.msg_len {
            return self.end(STEP_BAD);
        }
        let len = byte(msg, self.pos) as u32;
        if len == 0 {
            self.pos += 1;
            self.state = ST_RR_FIXED;
        } else if len & 0xc0 == 0xc0 {
            self.pos += 2;
            self.state = ST_RR_FIXED;
        } else if len > 63 {
            return self.end(STEP_BAD);
        } else {
            self.pos += len + 1;
        }
        STEP_MORE
    }

    /// Type, class, TTL, length and data of a record.
    #[inline(always)]
    fn rr_fixed(&mut self, msg: &[u8; DNS_BUF]) -> u32 {
        if self.pos + 10 > self.msg_len {
            return self.end(STEP_BAD);
        }
        let p = self.pos;
        let rtype = u16_at(msg, p);
        let class = u16_at(msg, p + 2);
        let ttl = (u16_at(msg, p + 4) as u32) << 16 | u16_at(msg, p + 6) as u32;
        let rdlen = u16_at(msg, p + 8) as u32;
        let data = p + 10;
        if data + rdlen > self.msg_len {
            return self.end(STEP_BAD);
        }
        self.pos = data + rdlen;
        self.answers_left -= 1;
        self.state = ST_RR_NAME;
        let family = match (rtype, class, rdlen) {
            (TYPE_A, CLASS_IN, 4) => 4,
            (TYPE_AAAA, CLASS_IN, 16) => 6,
            _ => return STEP_MORE,
        };
        self.family = family;
        // RFC 2181: a TTL with the top bit set is 0.
        self.ttl = if ttl & 0x8000_0000 != 0 { 0 } else { ttl };
        self.addr = [0; 16];
        for i in 0..16u32 {
            if i < rdlen {
                self.addr[i as usize] = byte(msg, data + i);
            }
        }
        STEP_ANSWER
    }
}

impl Default for DnsParser {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs the parser over `msg` as the kernel does: `matches(hash, exact)` says whether a
/// suffix is a policy's name; the answers of a question no suffix matched are not yielded.
/// Returns the number of steps taken (at most [`MAX_DNS_STEPS`]) and whether the message
/// ended well (not [`STEP_BAD`]).
pub fn run(
    msg: &[u8; DNS_BUF],
    msg_len: u32,
    parser: &mut DnsParser,
    mut matches: impl FnMut(u64, bool) -> bool,
    mut answer: impl FnMut(u32, [u8; 16], u32),
) -> (u32, bool) {
    parser.start(msg_len);
    let mut matched = false;
    for n in 0..MAX_DNS_STEPS {
        match parser.step(msg) {
            STEP_SUFFIX => matched |= matches(parser.hash, parser.exact == 1),
            STEP_NAME_DONE if !matched => return (n + 1, true),
            STEP_ANSWER => answer(parser.family, parser.addr, parser.ttl),
            STEP_END => return (n + 1, true),
            STEP_BAD => return (n + 1, false),
            _ => {}
        }
    }
    (MAX_DNS_STEPS, true)
}

/// Key of the per-policy name map ([`crate::NAMES_MAP`]): a table, [`NAME_EXACT`] or
/// [`NAME_WILDCARD`], and the [`name_hash`] of the name (of the part after `*.` for a
/// wildcard).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NameKey {
    pub table: u32,
    pub kind: u32,
    pub hash: u64,
}

pub const NAME_EXACT: u32 = 0;
/// `*.suffix`: one label or more in front of the suffix.
pub const NAME_WILDCARD: u32 = 1;

/// Value of [`crate::NAMES_MAP`]: the match list (ports, protocols, rules) of the allow rules
/// naming the name, in the table's lists, whether it is an approved sink, and the pattern as
/// written (for `ringfence-agent fqdn` and events; the programs read `list_id` and `flags`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NameRule {
    pub list_id: u32,
    pub rule_id: u32,
    /// [`NAME_SINK`] or 0.
    pub flags: u32,
    /// The pattern (`*.example.com`), NUL-padded.
    pub text: [u8; MAX_NAME],
}

/// [`NameRule::flags`]: addresses answered for the name are approved sinks of the policy's
/// exfiltration budgets (`approvedSinks.fqdns`).
pub const NAME_SINK: u32 = 1;

impl Default for NameRule {
    fn default() -> Self {
        Self { list_id: 0, rule_id: 0, flags: 0, text: [0; MAX_NAME] }
    }
}

impl NameRule {
    /// The pattern's bytes (up to the first NUL).
    pub fn text(&self) -> &[u8] {
        let end = self.text.iter().position(|&b| b == 0).unwrap_or(MAX_NAME);
        &self.text[..end]
    }
}

/// Key of [`crate::LEARNED_MAP`]: an address a policy's workloads were answered.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LearnedKey {
    pub policy: u32,
    /// 4 or 6 (an IPv4 address in the first four bytes).
    pub family: u32,
    pub addr: [u8; 16],
}

/// Value of [`crate::LEARNED_MAP`]: until when the address is allowed and by which name (looked
/// up again in the active table at every verdict, so a reload that drops the name drops the
/// address and one that keeps it keeps the address).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Learned {
    /// `bpf_ktime_get_ns` deadline.
    pub expires_ns: u64,
    pub name_hash: u64,
    pub kind: u32,
    /// The TTL of the answer that taught it (seconds).
    pub ttl: u32,
}

/// Key of [`crate::DNS_SERVERS_MAP`]: a table and an address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ServerKey {
    pub table: u32,
    pub family: u32,
    pub addr: [u8; 16],
}

/// [`crate::DNS_SERVERS_MAP`] values: a pinned resolver (`spec.dns.resolvers`) or a known DNS
/// over HTTPS endpoint.
pub const SERVER_RESOLVER: u32 = 1;
pub const SERVER_DOH: u32 = 2;

/// The TTL floor when the policy sets none (seconds).
pub const DEFAULT_TTL_FLOOR: u32 = 60;

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::NameKey {}
    unsafe impl aya::Pod for super::NameRule {}
    unsafe impl aya::Pod for super::LearnedKey {}
    unsafe impl aya::Pod for super::Learned {}
    unsafe impl aya::Pod for super::ServerKey {}
}

#[cfg(test)]
mod tests;
