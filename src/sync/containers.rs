//! The containers a snapshot keeps: entries between `base_dn` and the
//! objects that are no object themselves. See [`Containers`].

use std::collections::{HashMap, HashSet};

use super::error::SyncError;
use super::reader::DirectoryReader;
use super::snapshot::{Containers, Kind, Objects};
use crate::ldap::dn::{parent_text, Dn};
use crate::upstream::UpstreamConn;

/// The DNs strictly between `base` and each object of `objects` that are
/// no organization, by DN key. Objects share few parents: each distinct
/// parent text is parsed once, not every object's DN. An account that
/// holds objects counts as a container too (harmless: it is found as an
/// object first).
pub fn container_dns(base: &Dn, objects: &Objects) -> HashMap<String, Dn> {
    let parents: HashSet<&str> = objects
        .values()
        .filter_map(|o| parent_text(&o.dn))
        .collect();
    let mut found = HashMap::new();
    for text in parents {
        let mut at = Dn::parse(text).ok();
        while let Some(dn) = at {
            if dn == *base || !dn.is_within(base) {
                break;
            }
            let key = dn.key();
            if found.contains_key(&key) {
                // Its own ancestors were collected with it.
                break;
            }
            at = dn.parent();
            found.insert(key, dn);
        }
    }
    for org in objects.values().filter(|o| o.kind == Kind::Org) {
        if let Ok(dn) = Dn::parse(&org.dn) {
            found.remove(&dn.key());
        }
    }
    found
}

/// The containers of `objects`, by id: those of `known` whose DN is still
/// a container's keep their id; the others' ids are read (one base-scope
/// read each; an entry gone meanwhile is left out).
pub async fn containers_of(
    reader: &DirectoryReader,
    conn: &mut UpstreamConn,
    objects: &Objects,
    known: &Containers,
) -> Result<Containers, SyncError> {
    let mut by_key: HashMap<String, &String> = HashMap::new();
    for (id, dn) in known {
        if let Ok(dn) = Dn::parse(dn) {
            by_key.insert(dn.key(), id);
        }
    }
    let mut containers = Containers::new();
    for (key, dn) in container_dns(reader.base_dn(), objects) {
        if let Some(id) = by_key.get(&key) {
            containers.insert((*id).clone(), dn.to_string());
            continue;
        }
        let reply = reader
            .read_entry(conn, dn.as_str(), vec![reader.id_attr().to_owned()])
            .await?;
        if let Some(id) = reply.entries.first().and_then(|e| reader.id_of(e)) {
            containers.insert(id, dn.to_string());
        }
    }
    Ok(containers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::snapshot::SnapObject;

    fn object(kind: Kind, dn: &str) -> SnapObject {
        SnapObject {
            kind,
            hash: 0,
            depth: 0,
            dn: dn.into(),
        }
    }

    #[test]
    fn containers_are_the_non_object_entries_between_base_and_objects() {
        let base = Dn::parse("ou=Tenant,dc=example,dc=com").unwrap();
        let objects = Objects::from([
            (
                "1".into(),
                object(Kind::Org, "ou=sales,ou=tenant,dc=example,dc=com"),
            ),
            (
                "2".into(),
                object(Kind::Account, "uid=s1,ou=sales,ou=tenant,dc=example,dc=com"),
            ),
            (
                "3".into(),
                object(
                    Kind::Account,
                    "uid=st1,cn=inner,CN=Staging,ou=tenant,dc=example,dc=com",
                ),
            ),
            (
                "4".into(),
                object(
                    Kind::Account,
                    "uid=st2,cn=staging,ou=tenant,dc=example,dc=com",
                ),
            ),
            (
                "5".into(),
                object(Kind::Account, "uid=top,ou=tenant,dc=example,dc=com"),
            ),
        ]);
        let mut found: Vec<String> = container_dns(&base, &objects)
            .into_values()
            .map(|dn| dn.key())
            .collect();
        found.sort();
        let mut want = vec![
            Dn::parse("cn=inner,cn=staging,ou=tenant,dc=example,dc=com")
                .unwrap()
                .key(),
            Dn::parse("cn=staging,ou=tenant,dc=example,dc=com")
                .unwrap()
                .key(),
        ];
        want.sort();
        assert_eq!(found, want);
    }
}
