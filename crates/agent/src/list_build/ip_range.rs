//! IP address ranges of the built list: how they sort, which ranges contain
//! them and how they are written as CSV rows.

use std::net::IpAddr;

use ipnet::IpNet;

/// An IPv4 or IPv6 address range with its host bits cleared. IPv4-mapped
/// IPv6 ranges of prefix 96 or longer are stored as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Builds a range from an address and a prefix length, clearing host bits.
    /// Returns `None` for a prefix longer than the address.
    pub fn new(address: IpAddr, prefix: u8) -> Option<IpRange> {
        let range = match address {
            IpAddr::V4(v4) if prefix <= 32 => {
                let bits = u32::from(v4) & v4_mask(prefix);
                IpRange {
                    network: IpAddr::V4(bits.into()),
                    prefix,
                }
            }
            IpAddr::V6(v6) if prefix <= 128 => {
                let bits = u128::from(v6) & v6_mask(prefix);
                IpRange {
                    network: IpAddr::V6(bits.into()),
                    prefix,
                }
            }
            _ => return None,
        };
        Some(range.unwrap_mapped())
    }

    /// Returns the prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// Checks whether the range is one address.
    pub fn is_single(self) -> bool {
        self.prefix == self.max_prefix()
    }

    /// Returns the enclosing range with the shorter prefix `prefix`.
    pub fn supernet(self, prefix: u8) -> IpRange {
        IpRange::new(self.network, prefix.min(self.prefix)).unwrap_or(self)
    }

    /// Returns the sort key that puts every range before the ranges that
    /// contain it: IPv4 first, then by last address, then longer prefix first.
    pub fn sort_key(self) -> (u8, u128, std::cmp::Reverse<u8>) {
        let (family, last) = match self.network {
            IpAddr::V4(v4) => (4, u128::from(u32::from(v4) | !v4_mask(self.prefix))),
            IpAddr::V6(v6) => (6, u128::from(v6) | !v6_mask(self.prefix)),
        };
        (family, last, std::cmp::Reverse(self.prefix))
    }

    /// Returns the first column of the CSV row for this range: a single address
    /// with escaped dots (`203\.0\.113\.7`), or `network/prefix`. The policy
    /// crate reads both as IP rows.
    pub fn csv_entry(self) -> String {
        if self.is_single() {
            self.network.to_string().replace('.', "\\.")
        } else {
            format!("{}/{}", self.network, self.prefix)
        }
    }

    fn max_prefix(self) -> u8 {
        match self.network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// Turns an IPv4-mapped IPv6 range into IPv4, since targets are
    /// unwrapped the same way.
    fn unwrap_mapped(self) -> IpRange {
        if let IpAddr::V6(v6) = self.network {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), self.prefix >= 96) {
                return IpRange {
                    network: IpAddr::V4(v4),
                    prefix: self.prefix - 96,
                };
            }
        }
        self
    }
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl From<IpNet> for IpRange {
    /// Converts a range from the policy crate's list readers, which clear
    /// host bits and unwrap IPv4-mapped ranges the same way.
    fn from(net: IpNet) -> IpRange {
        let prefix = net.prefix_len();
        IpRange::new(net.addr(), prefix).expect("an IpNet prefix fits its address family")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> IpRange {
        let net = webwarden_policy::source::parse_net(text).expect("a valid range");
        IpRange::from(net)
    }

    #[test]
    fn range_sort_key_puts_inner_ranges_first() {
        let mut ranges: Vec<IpRange> = ["10.0.0.0/8", "10.200.0.0/16", "10.0.0.1", "9.0.0.0/8"]
            .into_iter()
            .map(parse)
            .collect();
        ranges.sort_by_key(|range| range.sort_key());
        let sorted: Vec<String> = ranges.iter().map(|r| r.csv_entry()).collect();
        assert_eq!(
            sorted,
            ["9.0.0.0/8", "10\\.0\\.0\\.1", "10.200.0.0/16", "10.0.0.0/8"]
        );
        let range = parse("10.1.2.3");
        assert_eq!(range.supernet(16).csv_entry(), "10.1.0.0/16");
        assert_eq!(range.supernet(0).csv_entry(), "0.0.0.0/0");
    }
}
