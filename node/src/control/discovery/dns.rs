//! The DNS source: a pool's `discover = { dns, type, port, resolvers, ... }` resolved with
//! hickory-resolver against the configured servers only (no system resolv.conf, no search
//! domains, no cache: every lookup asks a server, so a changed zone is seen at the next
//! lookup), again after the records' smallest TTL bounded by `min_ttl` and `max_ttl`.
//!
//! SRV records give target hosts and ports; each target's A (else AAAA) records give its
//! addresses. A and AAAA records give addresses for the pool's `port`. A name with no
//! records (NXDOMAIN or an empty answer) is `Found` empty; a timeout, a server failure or
//! a refused query is `Failed`, and the next lookup comes after `min_ttl`.

use super::source::Word;
use fulcrum_config::{Discover, RecordKind};
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, TokioResolver};
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;

/// One pool's DNS lookups and when the next one is due.
pub struct DnsSource {
    discover: Discover,
    resolver: TokioResolver,
    /// Why no resolver could be built (a bad name), reported as a failure each time.
    broken: Option<String>,
    due: Instant,
}

/// What one lookup found: addresses and the smallest TTL among the records used.
struct Answer {
    addrs: BTreeSet<String>,
    ttl: Duration,
}

impl DnsSource {
    /// A source for `discover`; its first lookup is due at once.
    pub fn new(discover: &Discover) -> DnsSource {
        let servers: Vec<NameServerConfig> = (discover.resolver_addrs().into_iter())
            .flat_map(|addr| [Protocol::Udp, Protocol::Tcp].map(|p| NameServerConfig::new(addr, p)))
            .collect();
        let config = ResolverConfig::from_parts(None, vec![], servers);
        let mut opts = ResolverOpts::default();
        opts.cache_size = 0;
        opts.ndots = 0;
        opts.timeout = discover.timeout;
        opts.attempts = 1;
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(opts)
                .build();
        let broken = fqdn(&discover.dns).err();
        DnsSource {
            discover: discover.clone(),
            resolver,
            broken,
            due: Instant::now(),
        }
    }

    /// Sleeps until the next lookup is due, looks up, and plans the one after.
    pub async fn next(&mut self) -> Word {
        tokio::time::sleep_until(self.due).await;
        let result = match &self.broken {
            Some(why) => Err(why.clone()),
            None => {
                let lookup = lookup(&self.resolver, &self.discover);
                match tokio::time::timeout(self.discover.timeout * 2, lookup).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {:?}", self.discover.timeout * 2)),
                }
            }
        };
        match result {
            Ok(answer) => {
                self.due = Instant::now() + self.discover.next_after(answer.ttl);
                Word::Found(answer.addrs)
            }
            Err(why) => {
                self.due = Instant::now() + self.discover.min_ttl;
                Word::Failed(why)
            }
        }
    }
}

/// `name` as an absolute name (no search domains apply).
fn fqdn(name: &str) -> Result<Name, String> {
    let text = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&text).map_err(|e| format!("`{name}` is not a DNS name: {e}"))
}

async fn lookup(resolver: &TokioResolver, d: &Discover) -> Result<Answer, String> {
    let name = fqdn(&d.dns)?;
    match (d.kind, d.port) {
        (RecordKind::Srv, _) => srv(resolver, name, d.max_ttl).await,
        (RecordKind::A, Some(port)) => {
            addresses(resolver, name, RecordType::A, port, d.max_ttl).await
        }
        (RecordKind::Aaaa, Some(port)) => {
            addresses(resolver, name, RecordType::AAAA, port, d.max_ttl).await
        }
        (_, None) => Err("A and AAAA records need a port".to_string()),
    }
}

impl Answer {
    fn empty(ceiling: Duration) -> Answer {
        Answer {
            addrs: BTreeSet::new(),
            ttl: ceiling,
        }
    }

    /// Counts one record's TTL toward the smallest.
    fn note_ttl(&mut self, record: &Record) {
        self.ttl = self.ttl.min(Duration::from_secs(record.ttl().into()));
    }
}

/// The answer to one question; `None` when the name has no records of the type
/// (NXDOMAIN or an empty answer), an error's text when the lookup failed.
async fn ask(
    resolver: &TokioResolver,
    name: Name,
    kind: RecordType,
) -> Result<Option<Lookup>, String> {
    match resolver.lookup(name, kind).await {
        Ok(lookup) => Ok(Some(lookup)),
        Err(e) if e.is_no_records_found() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

async fn addresses(
    resolver: &TokioResolver,
    name: Name,
    kind: RecordType,
    port: u16,
    ceiling: Duration,
) -> Result<Answer, String> {
    let mut answer = Answer::empty(ceiling);
    let Some(lookup) = ask(resolver, name, kind).await? else {
        return Ok(answer);
    };
    for record in lookup.record_iter() {
        let ip: IpAddr = match record.data() {
            RData::A(a) => a.0.into(),
            RData::AAAA(a) => a.0.into(),
            _ => continue,
        };
        answer.note_ttl(record);
        answer.addrs.insert(SocketAddr::new(ip, port).to_string());
    }
    Ok(answer)
}

async fn srv(resolver: &TokioResolver, name: Name, ceiling: Duration) -> Result<Answer, String> {
    let mut answer = Answer::empty(ceiling);
    let Some(lookup) = ask(resolver, name, RecordType::SRV).await? else {
        return Ok(answer);
    };
    for record in lookup.record_iter() {
        let RData::SRV(srv) = record.data() else {
            continue;
        };
        answer.note_ttl(record);
        // A target of "." says the service is not offered there.
        if srv.target().is_root() {
            continue;
        }
        let ips = resolver
            .lookup_ip(srv.target().clone())
            .await
            .map_err(|e| format!("SRV target {}: {e}", srv.target()))?;
        for record in ips.as_lookup().record_iter() {
            answer.note_ttl(record);
        }
        for ip in ips.iter() {
            answer
                .addrs
                .insert(SocketAddr::new(ip, srv.port()).to_string());
        }
    }
    Ok(answer)
}
