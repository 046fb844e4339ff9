//! The command line: usage text, argument cursor and value parsers (used by every command).
use std::net::IpAddr;
use std::process::exit;

pub const USAGE: &str = "usage:
  lab-probe serve --tcp P1,P2 --udp P1,P2
  lab-probe sink --tcp PORT [--udp PORT]
  lab-probe tunnel udp|icmp ADDR PORT --bytes N [--size S]
  lab-probe tcp ADDR PORT [--bytes N] [--timeout-ms T] [--bind LOCAL]
  lab-probe stream ADDR PORT --bytes N [--rate BYTES_PER_SEC] [--mark BYTES]... [--stall-ms S]
                   [--timeout-ms T] [--reuse listener|accepted PORT]
  lab-probe udp ADDR PORT [--connect] [--timeout-ms T] [--bind LOCAL]
  lab-probe raw ADDR PORT [--count N]
  lab-probe escape rthdr-udp|rthdr-tfo|srr-opt|srr-cmsg|srr-accepted|ping|raw-udp|raw-icmp|raw-hdrincl ADDR PORT
                   --marker M [--via HOP]... [--iface IF] [--count N]
  lab-probe frames ip|vlan|nonip IFACE ADDR PORT --marker M [--bypass] [--count N] [--wait-stdin]
  lab-probe capture IFACE --marker M...
  lab-probe race ADDR UDP_PORT TCP_PORT --marker M --stop-file F
  lab-probe loop [--duration-ms D] [--stop-file F] [--interval-ms I] [--timeout-ms T]
                 [--udp-timeout-ms U] --target tcp|udp|udpc:ADDR:PORT:allow|deny ...
  lab-probe resolve RESOLVER NAME [--aaaa] [--tcp] [--count N] [--connect PORT] [--never ADDR]...
                    [--expect-answers]
  lab-probe dns-forge FROM TO NAME ADDR [--port P] [--mutations N] [--seed S]";

/// Prints a usage error and exits 64.
pub fn usage(msg: &str) -> ! {
    eprintln!("lab-probe: {msg}\n{USAGE}");
    exit(64)
}

/// Parses an address literal, accepting `[v6]`.
pub fn parse_addr(s: &str) -> IpAddr {
    let t = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(s);
    t.parse().unwrap_or_else(|_| usage(&format!("bad address {s:?}")))
}

/// Parses a number or exits with a usage error.
pub fn parse_num<T: std::str::FromStr>(what: &str, s: &str) -> T {
    s.parse().unwrap_or_else(|_| usage(&format!("bad {what} {s:?}")))
}

/// Minimal flag cursor over the remaining arguments.
pub struct Args {
    items: Vec<String>,
    pos: usize,
}

impl Args {
    pub fn new(items: Vec<String>) -> Args {
        Args { items, pos: 0 }
    }

    pub fn next_arg(&mut self) -> Option<String> {
        let v = self.items.get(self.pos).cloned();
        self.pos += 1;
        v
    }
    /// The value following flag `flag`.
    pub fn value(&mut self, flag: &str) -> String {
        self.next_arg().unwrap_or_else(|| usage(&format!("{flag} needs a value")))
    }
}
