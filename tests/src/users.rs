//! Deterministic 1Password-shaped users: the same seed gives the same directory, so tests,
//! the demo and benchmarks can name users and compare runs.

use serde_json::{Value, json};

const GIVEN: &[&str] = &[
    "Ada",
    "Alan",
    "Grace",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "John",
    "Margaret",
    "Ken",
    "Radia",
    "Dennis",
    "Sophie",
    "Tim",
    "Hedy",
    "Linus",
    "Katherine",
    "Niklaus",
    "Shafi",
    "Leslie",
];
const FAMILY: &[&str] = &[
    "Lovelace",
    "Turing",
    "Hopper",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "McCarthy",
    "Hamilton",
    "Thompson",
    "Perlman",
    "Ritchie",
    "Wilson",
    "Berners-Lee",
    "Lamarr",
    "Torvalds",
    "Johnson",
    "Wirth",
    "Goldwasser",
    "Lamport",
];
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// splitmix64: tiny, fast and good enough to spread ids.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 26-character upper-case base32 id, like 1Password's.
pub fn id_for(seed: u64, n: u64) -> String {
    let a = mix(seed ^ mix(n));
    let b = mix(a ^ 0x5555_5555);
    let bits = ((a as u128) << 64) | b as u128;
    (0..26)
        .map(|i| BASE32[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuUser {
    pub id: String,
    pub email: String,
    pub given: String,
    pub family: String,
    pub active: bool,
}

impl EmuUser {
    pub fn generate(seed: u64, n: u64) -> Self {
        let h = mix(seed.wrapping_mul(31).wrapping_add(n));
        let given = GIVEN[(h % GIVEN.len() as u64) as usize];
        let family = FAMILY[((h >> 16) % FAMILY.len() as u64) as usize];
        EmuUser {
            id: id_for(seed, n),
            email: format!(
                "{}.{}{}@example.com",
                given.to_ascii_lowercase(),
                family.to_ascii_lowercase(),
                n
            ),
            given: given.into(),
            family: family.into(),
            // About one member in twenty is suspended.
            active: !(h >> 40).is_multiple_of(20),
        }
    }

    /// The resource as the bridge serves it.
    pub fn to_scim(&self) -> Value {
        let formatted = format!("{} {}", self.given, self.family);
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": self.id,
            "userName": self.email,
            "name": {"formatted": formatted, "familyName": self.family, "givenName": self.given},
            "displayName": formatted,
            "active": self.active,
            "emails": [{"value": self.email, "primary": true}],
            "preferredLanguage": "en",
            "meta": {"resourceType": "User"},
        })
    }
}

pub fn generate(seed: u64, count: usize) -> Vec<EmuUser> {
    (0..count as u64)
        .map(|n| EmuUser::generate(seed, n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_1password_ids_and_are_unique() {
        let users = generate(7, 20_000);
        let mut ids: Vec<_> = users.iter().map(|u| u.id.clone()).collect();
        assert!(
            ids.iter()
                .all(|i| i.len() == 26 && i.bytes().all(|b| BASE32.contains(&b)))
        );
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 20_000);
        assert_eq!(generate(7, 3), generate(7, 3));
        assert_ne!(generate(7, 3), generate(8, 3));
    }
}
