//! Caps per client: what one address may hold of a port (connections,
//! streams), and a listener's connections held to them (`capped`). An IPv6 client is counted by its /64, since one host may use
//! any address of its prefix, and an IPv4-mapped one as the IPv4 address.

use std::sync::Arc;

/// Connections held by each address (an IPv6 client by its /64, since one
/// host may use any address of its prefix).
pub struct PerAddress {
    cap: usize,
    held: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection of an address, given back when dropped.
pub struct Held(Arc<PerAddress>, std::net::IpAddr);

/// The address a client is counted by.
pub fn client_of(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1)).into(),
        },
        v4 => v4,
    }
}

impl PerAddress {
    pub fn new(cap: usize) -> PerAddress {
        PerAddress {
            cap,
            held: Default::default(),
        }
    }

    pub fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Held> {
        let ip = client_of(ip);
        let mut m = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Held(self.clone(), ip))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut m = (self.0).held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// A connection that holds its place among its address's until closed.
pub struct Capped {
    io: tokio::net::TcpStream,
    _held: Held,
}

/// The connections `incoming` accepts, past `per`'s cap for an address
/// closed at once: one client cannot take every connection of a port.
pub fn capped<S>(
    incoming: S,
    per: Arc<PerAddress>,
) -> impl futures::Stream<Item = std::io::Result<Capped>>
where
    S: futures::Stream<Item = std::io::Result<tokio::net::TcpStream>>,
{
    use futures::StreamExt;
    incoming.filter_map(move |accepted| {
        let per = per.clone();
        async move {
            let io = match accepted {
                Ok(io) => io,
                Err(e) => return Some(Err(e)),
            };
            let ip = io.peer_addr().ok()?.ip();
            match per.take(ip) {
                Some(held) => Some(Ok(Capped { io, _held: held })),
                None => {
                    tracing::debug!(client = %client_of(ip), "connection refused: this address holds its share");
                    None
                }
            }
        }
    })
}

impl tokio::io::AsyncRead for Capped {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Capped {
    type ConnectInfo = <tokio::net::TcpStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_counted_by_its_prefix_and_a_mapped_one_as_ipv4() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_of(a), client_of(b));
        assert_ne!(client_of(a), client_of(other));
        let mapped: std::net::IpAddr = "::ffff:198.18.0.5".parse().unwrap();
        assert_eq!(
            client_of(mapped),
            "198.18.0.5".parse::<std::net::IpAddr>().unwrap()
        );
        let per = Arc::new(PerAddress::new(32));
        let held: Vec<_> = (0..32)
            .map(|i| per.take(format!("2001:db8:1:2::{i:x}").parse().unwrap()))
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(per.take(b).is_none(), "a 33rd address of one /64");
        assert!(per.take(other).is_some());
    }
}
