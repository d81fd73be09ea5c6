//! The resource model: cpu (millicores), memory and ephemeral storage (bytes), and extended
//! resources (integers such as `nvidia.com/gpu` or `flotilla.dev/camera`), each interned to a
//! small number so a fit check is a walk over a few integers.

use std::collections::{BTreeMap, HashMap};

use api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The number of `cpu`.
pub const CPU: usize = 0;
/// The number of `memory`.
pub const MEMORY: usize = 1;
/// The number of `ephemeral-storage`.
pub const STORAGE: usize = 2;

/// Resource names and their numbers; the first three are fixed.
#[derive(Clone, Debug)]
pub struct ResourceNames {
    names: Vec<String>,
    ids: HashMap<String, usize>,
}

impl Default for ResourceNames {
    fn default() -> Self {
        let mut names = ResourceNames { names: Vec::new(), ids: HashMap::new() };
        for n in ["cpu", "memory", "ephemeral-storage"] {
            names.intern(n);
        }
        names
    }
}

impl ResourceNames {
    /// The number of `name`, assigning the next one to a name not seen before.
    pub fn intern(&mut self, name: &str) -> usize {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// The name of a number.
    pub fn name(&self, id: usize) -> &str {
        &self.names[id]
    }
}

/// Resource numbers kept inline (cpu, memory, storage and the first extended resources), so a
/// fit check touches the node's own memory and no other allocation.
const INLINE: usize = 8;

/// Amounts per resource number (cpu in millicores, the rest in units); missing = 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Amounts {
    inline: [i64; INLINE],
    rest: Vec<i64>,
}

impl Amounts {
    /// The amount of resource `id`.
    #[inline]
    pub fn get(&self, id: usize) -> i64 {
        if id < INLINE {
            self.inline[id]
        } else {
            self.rest.get(id - INLINE).copied().unwrap_or(0)
        }
    }

    /// Adds `amount` of resource `id`.
    pub fn add(&mut self, id: usize, amount: i64) {
        let slot = if id < INLINE {
            &mut self.inline[id]
        } else {
            if id - INLINE >= self.rest.len() {
                self.rest.resize(id - INLINE + 1, 0);
            }
            &mut self.rest[id - INLINE]
        };
        *slot = slot.saturating_add(amount);
    }

    /// Every non-zero amount: resource number and amount.
    pub fn iter(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.inline.iter().chain(&self.rest).copied().enumerate().filter(|(_, v)| *v != 0)
    }

    /// Adds every amount of a request.
    pub fn add_request(&mut self, request: &Request, sign: i64) {
        for (id, amount) in &request.0 {
            self.add(*id, amount * sign);
        }
    }

    /// Reads a `capacity`/`allocatable` map.
    pub fn from_map(map: &BTreeMap<String, Quantity>, names: &mut ResourceNames) -> Amounts {
        let mut amounts = Amounts::default();
        for (name, q) in map {
            if name == "pods" {
                continue;
            }
            if let Some(v) = api::pod::resource_amount(name, q) {
                amounts.add(names.intern(name), v);
            }
        }
        amounts
    }
}

/// What a pod asks for: the non-zero amounts, by resource number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request(pub Vec<(usize, i64)>);

impl Request {
    /// The amount of resource `id`.
    pub fn get(&self, id: usize) -> i64 {
        self.0.iter().find(|(i, _)| *i == id).map_or(0, |(_, a)| *a)
    }
}

impl Request {
    /// Interns a by-name request.
    pub fn from_names(by_name: &BTreeMap<String, i64>, names: &mut ResourceNames) -> Request {
        let mut r: Vec<(usize, i64)> = by_name.iter().map(|(n, v)| (names.intern(n), *v)).collect();
        r.sort_unstable();
        Request(r)
    }
}
