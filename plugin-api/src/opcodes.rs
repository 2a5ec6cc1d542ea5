//! Opcode names of each Python version (`assets/opcodes.json`, made by tools/gen_opcodes.py
//! from each interpreter's `opcode` module), named as CPython 3.15's `opcode_utils` names them.

use std::collections::HashMap;

const TABLES: &str = include_str!("../../assets/opcodes.json");

/// One version's opcode names and the base opcode of each specialised one.
pub struct Opcodes {
    names: HashMap<u8, String>,
    deopt: HashMap<u8, u8>,
}

/// What `opcode_utils.get_opcode_info` says of an opcode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpcodeInfo {
    pub opname: String,
    pub base_opname: String,
    pub is_specialized: bool,
}

/// The table of Python `major.minor` as JSON (`names`, `deopt`), for pages that name opcodes.
#[must_use]
pub fn table_json(major: u8, minor: u8) -> Option<serde_json::Value> {
    let tables: serde_json::Value = serde_json::from_str(TABLES).ok()?;
    tables.get(format!("{major}.{minor}")).cloned()
}

impl Opcodes {
    /// The opcodes of Python `major.minor` (3.11 and later record them).
    #[must_use]
    pub fn for_version(major: u8, minor: u8) -> Option<Opcodes> {
        let table = table_json(major, minor)?;
        let pairs = |field: &str| -> Vec<(u8, serde_json::Value)> {
            table[field]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.clone())))
                .collect()
        };
        Some(Opcodes {
            names: pairs("names")
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_str()?.to_owned())))
                .collect(),
            deopt: pairs("deopt")
                .into_iter()
                .filter_map(|(k, v)| Some((k, u8::try_from(v.as_u64()?).ok()?)))
                .collect(),
        })
    }

    fn name(&self, op: u8) -> String {
        self.names
            .get(&op)
            .cloned()
            .unwrap_or_else(|| format!("<{op}>"))
    }

    #[must_use]
    pub fn info(&self, op: u8) -> OpcodeInfo {
        let opname = self.name(op);
        match self.deopt.get(&op) {
            Some(&base) if self.names.contains_key(&op) => OpcodeInfo {
                opname,
                base_opname: self.name(base),
                is_specialized: true,
            },
            _ => OpcodeInfo {
                base_opname: opname.clone(),
                opname,
                is_specialized: false,
            },
        }
    }

    /// `LOAD_ATTR`, or `LOAD_ATTR_INSTANCE_VALUE (LOAD_ATTR)` for a specialised one.
    #[must_use]
    pub fn format(&self, op: u8) -> String {
        let info = self.info(op);
        if info.is_specialized {
            format!("{} ({})", info.opname, info.base_opname)
        } else {
            info.opname
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_cpython_315() {
        let ops = Opcodes::for_version(3, 15).expect("3.15 table");
        assert_eq!(ops.format(42), "BINARY_OP");
        assert_eq!(ops.format(130), "BINARY_OP_ADD_INT (BINARY_OP)");
        assert!(Opcodes::for_version(2, 7).is_none());
    }
}
