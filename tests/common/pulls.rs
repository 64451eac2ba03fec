//! Sync pulls as a consumer makes them: `ldapgate sync full` and `sync
//! changes` against a slapd, and a consumer that applies change sets line
//! by line and checks what a real one would rely on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::*;

/// A configuration for sync pulls from `slapd` under `base_dn` (as the
/// rootdn when `service_account`), with its own state directory; `extra`
/// goes at the end of the `[sync]` section (or opens other sections).
pub fn sync_config(slapd: &Slapd, base_dn: &str, service_account: bool, extra: &str) -> PathBuf {
    let state = slapd.dir.path().join(format!("state-{}", free_port()));
    let mut directory = format!(
        "servers = [\"{}\"]\nca_file = \"{}\"\nbase_dn = \"{base_dn}\"\n",
        slapd.ldaps_url(),
        slapd.certs.ca_pem.display()
    );
    if service_account {
        let pw = slapd.dir.path().join("bind_password");
        std::fs::write(&pw, ADMIN_PW).unwrap();
        directory.push_str(&format!(
            "bind_dn = \"{ADMIN_DN}\"\nbind_password_file = \"{}\"\n",
            pw.display()
        ));
    }
    let path = slapd.dir.path().join(format!("sync-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!(
            "[server]\nldap_listen = [\"127.0.0.1:{}\"]\n[directory]\n{directory}\n[sync]\nstate_dir = \"{}\"\n{extra}\n",
            free_port(),
            state.display()
        ),
    )
    .unwrap();
    path
}

/// The database lines of slapd's syncprov overlay; with a sessionlog,
/// deletions come as such, without one through a present phase.
pub fn syncprov(sessionlog: bool) -> String {
    let mut lines =
        String::from("moduleload syncprov\nindex entryCSN,entryUUID eq\noverlay syncprov\n");
    if sessionlog {
        lines.push_str("syncprov-sessionlog 1000\n");
    }
    lines
}

/// `ldapgate sync full`: the parsed lines and the exit code.
pub fn sync_full(config: &Path) -> (Vec<serde_json::Value>, i32) {
    let out = Command::new(ldapgate_binary())
        .args(["sync", "full", "-c"])
        .arg(config)
        .output()
        .unwrap();
    let lines = json_lines(&String::from_utf8_lossy(&out.stdout));
    (lines, out.status.code().unwrap_or(-1))
}

/// `ldapgate sync changes`: the parsed lines and the exit code.
pub fn sync_changes(
    config: &Path,
    cookie: &str,
    approve: Option<&str>,
) -> (Vec<serde_json::Value>, i32) {
    let mut cmd = Command::new(ldapgate_binary());
    cmd.args(["sync", "changes", "-c"])
        .arg(config)
        .args(["--cookie", cookie]);
    if let Some(a) = approve {
        cmd.args(["--approve", a]);
    }
    let out = cmd.output().unwrap();
    let lines = json_lines(&String::from_utf8_lossy(&out.stdout));
    (lines, out.status.code().unwrap_or(-1))
}

/// The ops of the change lines about `id`, in order.
pub fn ops_for<'a>(body: &'a [serde_json::Value], id: &str) -> Vec<&'a str> {
    body.iter()
        .filter(|l| l["id"] == id)
        .map(|l| l["op"].as_str().unwrap_or_default())
        .collect()
}

/// The first line about `id`.
pub fn line_for<'a>(body: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    body.iter()
        .find(|l| l["id"] == id)
        .unwrap_or_else(|| panic!("no line for {id} in {body:#?}"))
}

/// LDIF that gives the entry at `dn` the auxiliary class `class` with the
/// attributes it needs (`add`), or takes both away again (values are not
/// needed then).
pub fn aux_class(dn: &str, class: &str, attrs: &[(&str, String)], add: bool) -> String {
    let verb = if add { "add" } else { "delete" };
    let mut ldif =
        format!("dn: {dn}\nchangetype: modify\n{verb}: objectClass\nobjectClass: {class}\n");
    for (attr, value) in attrs {
        ldif.push_str(&format!("-\n{verb}: {attr}\n"));
        if add {
            ldif.push_str(&format!("{attr}: {value}\n"));
        }
    }
    ldif.push('\n');
    ldif
}

/// What posixAccount needs, for an account named `name`.
pub fn posix_attrs(name: &str, number: u32) -> Vec<(&'static str, String)> {
    vec![
        ("uid", name.to_owned()),
        ("uidNumber", number.to_string()),
        ("gidNumber", number.to_string()),
        ("homeDirectory", format!("/home/{name}")),
    ]
}

/// `ldapgate sync verify`: its report, after checking the exit code.
pub fn sync_verify(cfg: &Path, code: i32) -> Value {
    let out = Command::new(ldapgate_binary())
        .args(["sync", "verify", "-c"])
        .arg(cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What a consumer holds: the export lines (without `op`) by id.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Consumer {
    pub objects: BTreeMap<String, Value>,
    /// The pulls' base DN, as configured.
    base_dn: String,
    /// The base entry's id: the parent of the objects directly below it,
    /// learnt from the first such object.
    base_id: Option<String>,
}

impl Consumer {
    /// The objects of a full pull of `base_dn` (its lines but the last).
    pub fn from_full(lines: &[Value], base_dn: &str) -> Consumer {
        let mut consumer = Consumer {
            base_dn: base_dn.to_owned(),
            ..Consumer::default()
        };
        for line in &lines[..lines.len() - 1] {
            consumer.learn_base(line);
            let id = line["id"].as_str().unwrap().to_owned();
            if let Some(first) = consumer.objects.insert(id, line.clone()) {
                panic!("one id, two lines in a full pull: {first} and {line}");
            }
        }
        consumer
    }

    /// Whether `object` sits directly below the base entry (learning the
    /// base entry's id from it).
    fn learn_base(&mut self, object: &Value) -> bool {
        let dn = object["dn"].as_str().unwrap_or_default();
        let below = dn
            .split_once(',')
            .is_some_and(|(_, parent)| parent.eq_ignore_ascii_case(&self.base_dn));
        if below && self.base_id.is_none() {
            self.base_id = object["parent_id"].as_str().map(str::to_owned);
        }
        below
    }

    /// The usernames of the accounts held.
    pub fn usernames(&self) -> Vec<&str> {
        self.objects
            .values()
            .filter_map(|o| o["fields"]["username"].as_str())
            .collect()
    }

    /// Applies a change set (its lines but the `end`), one line at a time,
    /// as a consumer with foreign keys and unique usernames would: an
    /// upsert's parent must be held, a deleted organization must hold
    /// nothing any more, a deletion must name an object held, and no two
    /// accounts may share a username at any point.
    pub fn apply(&mut self, body: &[Value]) -> Result<(), String> {
        for (n, line) in body.iter().enumerate() {
            let id = line["id"]
                .as_str()
                .ok_or(format!("line {n}: no id"))?
                .to_owned();
            match line["op"].as_str() {
                Some("delete") => {
                    if self.objects.remove(&id).is_none() {
                        return Err(format!("line {n}: delete of {id}, which is not held"));
                    }
                    if let Some(child) = self
                        .objects
                        .values()
                        .find(|o| o["parent_id"] == id.as_str())
                    {
                        return Err(format!(
                            "line {n}: {id} deleted while {} is below it",
                            child["dn"]
                        ));
                    }
                }
                Some("upsert") => {
                    let mut object = line.clone();
                    object.as_object_mut().unwrap().remove("op");
                    let top = self.learn_base(&object);
                    if let Some(parent) = object["parent_id"].as_str() {
                        let held = self.objects.get(parent).is_some_and(|p| p["type"] == "org");
                        let base = top && self.base_id.as_deref() == Some(parent);
                        if !(held || base) {
                            return Err(format!(
                                "line {n}: {} upserted before its parent {parent}",
                                object["dn"]
                            ));
                        }
                    }
                    if object["type"] == "account" {
                        let name = &object["fields"]["username"];
                        if let Some(other) = self.objects.iter().find(|(k, o)| {
                            **k != id
                                && o["type"] == "account"
                                && !name.is_null()
                                && o["fields"]["username"] == *name
                        }) {
                            return Err(format!(
                                "line {n}: username {name} of {} is still {}'s",
                                object["dn"], other.0
                            ));
                        }
                    }
                    self.objects.insert(id, object);
                }
                other => return Err(format!("line {n}: op {other:?}")),
            }
        }
        Ok(())
    }
}

/// The cookie of a pull's `end` line.
pub fn cookie_of(lines: &[Value]) -> String {
    let end = lines.last().expect("a pull prints an end line");
    end["cookie"]
        .as_str()
        .unwrap_or_else(|| panic!("no cookie: {end}"))
        .to_owned()
}

/// Three pullers on one directory: one with the directory's change
/// tracking, one comparing snapshots, one for full pulls.
pub struct Pullers {
    pub tracked: PathBuf,
    compared: PathBuf,
    full: PathBuf,
    tracked_cookie: String,
    compared_cookie: String,
    pub consumer: Consumer,
    method: &'static str,
}

impl Pullers {
    /// Pullers of `base` with `extra` configuration (see [`sync_config`]),
    /// after a full pull each.
    pub fn new(slapd: &Slapd, base: &str, extra: &str) -> Pullers {
        let tracked = sync_config(slapd, base, true, extra);
        let compared = sync_config(
            slapd,
            base,
            true,
            &format!("change_tracking = \"snapshot\"\n{extra}"),
        );
        let full = sync_config(slapd, base, true, extra);
        Pullers::with_configs(tracked, compared, full, base, "syncrepl")
    }

    /// Pullers with these configurations: `tracked` uses the directory's
    /// tracking (`method`, as the end line names it), `compared` has
    /// `change_tracking = "snapshot"`, `full` is for full pulls.
    pub fn with_configs(
        tracked: PathBuf,
        compared: PathBuf,
        full: PathBuf,
        base: &str,
        method: &'static str,
    ) -> Pullers {
        let (first, code) = sync_full(&tracked);
        assert_eq!(code, 0, "{first:?}");
        let (second, code) = sync_full(&compared);
        assert_eq!(code, 0, "{second:?}");
        Pullers {
            tracked_cookie: cookie_of(&first),
            compared_cookie: cookie_of(&second),
            consumer: Consumer::from_full(&first, base),
            tracked,
            compared,
            full,
            method,
        }
    }

    /// One changes pull by each method: the same change set, delivered in
    /// an order the consumer can apply. `what` names the step in messages.
    pub fn pull(&mut self, what: &str) {
        let (tracked, code) = sync_changes(&self.tracked, &self.tracked_cookie, None);
        assert_eq!(code, 0, "{what}: {tracked:#?}");
        let (compared, code) = sync_changes(&self.compared, &self.compared_cookie, None);
        assert_eq!(code, 0, "{what}: {compared:#?}");
        let end = tracked.last().unwrap();
        assert_eq!(end["method"], self.method, "{what}: {end}");
        assert!(
            end.get("resync_reason").is_none(),
            "{what}: the tracker's report was not followed: {end}"
        );
        assert_eq!(compared.last().unwrap()["method"], "snapshot");
        let body = &tracked[..tracked.len() - 1];
        assert_eq!(
            by_id(body),
            by_id(&compared[..compared.len() - 1]),
            "{what}: {} (left) and the snapshot difference (right) differ",
            self.method
        );
        self.consumer
            .apply(body)
            .unwrap_or_else(|e| panic!("{what}: {e}\n{body:#?}"));
        self.tracked_cookie = cookie_of(&tracked);
        self.compared_cookie = cookie_of(&compared);
    }

    /// The consumer holds what a full pull delivers now.
    pub fn assert_in_step(&self, what: &str) {
        let (full, code) = sync_full(&self.full);
        assert_eq!(code, 0, "{what}: {full:?}");
        let want = Consumer::from_full(&full, &self.consumer.base_dn).objects;
        let held = &self.consumer.objects;
        let differ: Vec<_> = want
            .keys()
            .chain(held.keys())
            .filter(|id| want.get(*id) != held.get(*id))
            .map(|id| {
                (
                    id,
                    held.get(id).map(|o| &o["dn"]),
                    want.get(id).map(|o| &o["dn"]),
                )
            })
            .collect();
        assert!(
            differ.is_empty(),
            "{what}: held by the consumer (left) and delivered by a full pull (right) differ: \
             {differ:#?}"
        );
    }
}

/// The lines of a change set by id (several lines for one id are kept).
pub fn by_id(body: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in body {
        map.entry(line["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(line.clone());
    }
    map
}
