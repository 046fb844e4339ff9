//! The interface's addresses, MTU, link state and routes, over rtnetlink (the `rtnetlink`
//! crate). WireGuard itself (wireguard-control) configures none of these.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::{
    packet_route::{
        address::AddressAttribute,
        route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol},
    },
    Handle, LinkUnspec, RouteMessageBuilder,
};

/// Routes the agent adds carry this protocol; only those are ever deleted.
const OWN_PROTOCOL: RouteProtocol = RouteProtocol::Static;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("netlink connection: {0}")]
    Connect(#[from] std::io::Error),
    #[error("route {0}: {1}")]
    Route(IpNet, String),
}

/// An rtnetlink connection (its task runs on the current tokio runtime).
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    pub fn connect() -> Result<Self, LinkError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The interface's index, `None` if it does not exist (in this network namespace).
    pub async fn index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets the MTU and brings the link up.
    pub async fn up(&self, index: u32, mtu: u32) -> Result<(), LinkError> {
        self.handle.link().set(LinkUnspec::new_with_index(index).mtu(mtu).up().build()).execute().await?;
        Ok(())
    }

    pub async fn delete(&self, index: u32) -> Result<(), LinkError> {
        self.handle.link().del(index).execute().await?;
        Ok(())
    }

    /// Makes the interface's addresses exactly `want` (IPv6 link-local ones are left alone).
    /// Returns (added, removed).
    pub async fn sync_addresses(
        &self,
        index: u32,
        want: &[IpNet],
    ) -> Result<(Vec<IpNet>, Vec<IpNet>), LinkError> {
        let mut have = Vec::new();
        let mut msgs = self.handle.address().get().set_link_index_filter(index).execute();
        while let Some(m) = msgs.try_next().await? {
            let addr = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = addr.or_else(|| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(ip) = addr {
                let link_local = matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
                if !link_local {
                    have.push((IpNet::new(ip, m.header.prefix_len).expect("kernel prefix length"), m));
                }
            }
        }
        let mut removed = Vec::new();
        for (net, msg) in have.iter() {
            if !want.contains(net) {
                self.handle.address().del(msg.clone()).execute().await?;
                removed.push(*net);
            }
        }
        let mut added = Vec::new();
        for net in want {
            if !have.iter().any(|(n, _)| n == net) {
                self.handle.address().add(index, net.addr(), net.prefix_len()).replace().execute().await?;
                added.push(*net);
            }
        }
        Ok((added, removed))
    }

    /// Routes in the main table through `index` that the agent added.
    pub async fn own_routes(&self, index: u32) -> Result<Vec<IpNet>, LinkError> {
        let mut out = Vec::new();
        for query in
            [RouteMessageBuilder::<Ipv4Addr>::new().build(), RouteMessageBuilder::<Ipv6Addr>::new().build()]
        {
            let mut routes = self.handle.route().get(query).execute();
            while let Some(r) = routes.try_next().await? {
                if r.header.protocol != OWN_PROTOCOL || r.header.table != RouteHeader::RT_TABLE_MAIN {
                    continue;
                }
                if !r.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index)) {
                    continue;
                }
                let dst = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
                    RouteAttribute::Destination(RouteAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
                    _ => None,
                });
                let dst = dst.unwrap_or(match r.header.address_family {
                    rtnetlink::packet_route::AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                });
                if let Ok(net) = IpNet::new(dst, r.header.destination_prefix_length) {
                    out.push(net);
                }
            }
        }
        Ok(out)
    }

    fn route(index: u32, net: IpNet) -> Result<RouteMessage, LinkError> {
        Ok(RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(net.addr(), net.prefix_len())
            .map_err(|e| LinkError::Route(net, e.to_string()))?
            .output_interface(index)
            .protocol(OWN_PROTOCOL)
            .build())
    }

    /// Adds (or replaces) the route to `net` through the interface.
    pub async fn add_route(&self, index: u32, net: IpNet) -> Result<(), LinkError> {
        self.handle.route().add(Self::route(index, net)?).replace().execute().await?;
        Ok(())
    }

    pub async fn del_route(&self, index: u32, net: IpNet) -> Result<(), LinkError> {
        self.handle.route().del(Self::route(index, net)?).execute().await?;
        Ok(())
    }
}
