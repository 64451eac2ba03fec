//! Randomized directory histories (issue 10): a few hundred random adds,
//! edits, renames, moves (of accounts, OUs and containers, into, within
//! and out of `base_dn`; renames in case only), class changes (accounts and
//! organizations by auxiliary classes), deletions and re-creations on a
//! real slapd with syncprov, with a changes pull after every few. Every
//! pull by syncrepl must equal the snapshot difference, and the change
//! sets applied to the first full pull must give exactly the last one.
//!
//! The seed is printed with any failure; `LDAPGATE_TEST_SEED=<n>` repeats
//! a run.

mod common;

use common::*;

/// Operations per history.
const OPERATIONS: usize = 300;

/// xorshift64*: enough to pick operations, and repeatable from a seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Ou,
    /// An organizationalRole; an organization while it has dcObject.
    Container {
        org: bool,
    },
    Person,
    /// A device; an account while it has posixAccount.
    Device {
        posix: bool,
    },
}

#[derive(Clone)]
struct Node {
    class: Class,
    /// The RDN value (ou=, cn= or uid=).
    name: String,
    /// None: directly under BASE_DN.
    parent: Option<usize>,
    alive: bool,
}

/// The tree as the test made it, to pick valid operations.
#[derive(Clone)]
struct Tree {
    nodes: Vec<Node>,
    next: usize,
}

impl Tree {
    fn new() -> Tree {
        let top = |name: &str| Node {
            class: Class::Ou,
            name: name.into(),
            parent: None,
            alive: true,
        };
        Tree {
            nodes: vec![top("tenant"), top("outside")],
            next: 0,
        }
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn rdn(&self, i: usize) -> String {
        let n = &self.nodes[i];
        match n.class {
            Class::Ou => format!("ou={}", n.name),
            Class::Container { .. } | Class::Device { .. } => format!("cn={}", n.name),
            Class::Person => format!("uid={}", n.name),
        }
    }

    fn dn(&self, i: usize) -> String {
        match self.nodes[i].parent {
            Some(p) => format!("{},{}", self.rdn(i), self.dn(p)),
            None => format!("{},{BASE_DN}", self.rdn(i)),
        }
    }

    fn alive(&self, pred: impl Fn(&Node) -> bool) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive && pred(&self.nodes[*i]))
            .collect()
    }

    fn holders(&self) -> Vec<usize> {
        self.alive(|n| matches!(n.class, Class::Ou | Class::Container { .. }))
    }

    fn within(&self, mut i: usize, top: usize) -> bool {
        loop {
            if i == top {
                return true;
            }
            match self.nodes[i].parent {
                Some(p) => i = p,
                None => return false,
            }
        }
    }

    fn has_children(&self, i: usize) -> bool {
        self.nodes.iter().any(|n| n.alive && n.parent == Some(i))
    }

    fn add(&mut self, class: Class, name: String, parent: usize) -> String {
        self.nodes.push(Node {
            class,
            name,
            parent: Some(parent),
            alive: true,
        });
        let i = self.nodes.len() - 1;
        let dn = self.dn(i);
        let name = &self.nodes[i].name;
        match class {
            Class::Ou => format!("dn: {dn}\nchangetype: add\nobjectClass: organizationalUnit\nou: {name}\n\n"),
            Class::Container { .. } => format!("dn: {dn}\nchangetype: add\nobjectClass: organizationalRole\ncn: {name}\n\n"),
            Class::Person => format!(
                "dn: {dn}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\nsn: {name}\nmail: {name}@example.com\n\n"
            ),
            Class::Device { .. } => format!("dn: {dn}\nchangetype: add\nobjectClass: device\ncn: {name}\n\n"),
        }
    }

    /// A random entry added: a person twice as often as an OU, a
    /// container or a device.
    fn add_random(&mut self, rng: &mut Rng) -> String {
        let holders = self.holders();
        let parent = holders[rng.below(holders.len())];
        let class = [
            Class::Person,
            Class::Person,
            Class::Ou,
            Class::Container { org: false },
            Class::Device { posix: false },
        ][rng.below(5)];
        let name = self.fresh(match class {
            Class::Person => "p",
            Class::Ou => "u",
            _ => "c",
        });
        self.add(class, name, parent)
    }

    /// One random operation, as LDIF for ldapmodify (slapd refuses a move
    /// to where the entry already is: never asked).
    fn operation(&mut self, rng: &mut Rng) -> String {
        let holders = self.holders();
        let people = self.alive(|n| n.class == Class::Person);
        let movable: Vec<usize> = holders.iter().copied().filter(|i| *i > 1).collect();
        loop {
            match rng.below(14) {
                0..=2 => return self.add_random(rng),
                3 if !people.is_empty() => {
                    let i = people[rng.below(people.len())];
                    let value = self.fresh("m");
                    return format!(
                        "dn: {}\nchangetype: modify\nreplace: mail\nmail: {value}@example.com\n\n",
                        self.dn(i)
                    );
                }
                4 if !people.is_empty() => {
                    let i = people[rng.below(people.len())];
                    let dn = self.dn(i);
                    self.nodes[i].name = self.fresh("r");
                    return format!(
                        "dn: {dn}\nchangetype: modrdn\nnewrdn: {}\ndeleteoldrdn: 1\n\n",
                        self.rdn(i)
                    );
                }
                5 if !people.is_empty() => {
                    let i = people[rng.below(people.len())];
                    let parent = holders[rng.below(holders.len())];
                    if Some(parent) != self.nodes[i].parent {
                        return self.move_to(i, parent);
                    }
                }
                6 if !people.is_empty() => {
                    let i = people[rng.below(people.len())];
                    self.nodes[i].alive = false;
                    return format!("dn: {}\nchangetype: delete\n\n", self.dn(i));
                }
                7 if !people.is_empty() => {
                    // Deleted and created again: same DN and username.
                    let i = people[rng.below(people.len())];
                    let (name, parent) = (self.nodes[i].name.clone(), self.nodes[i].parent);
                    self.nodes[i].alive = false;
                    let gone = format!("dn: {}\nchangetype: delete\n\n", self.dn(i));
                    return gone + &self.add(Class::Person, name, parent.unwrap_or(0));
                }
                8 | 9 if !movable.is_empty() => {
                    let i = movable[rng.below(movable.len())];
                    let targets: Vec<usize> = holders
                        .iter()
                        .copied()
                        .filter(|t| !self.within(*t, i) && Some(*t) != self.nodes[i].parent)
                        .collect();
                    if !targets.is_empty() {
                        let parent = targets[rng.below(targets.len())];
                        return self.move_to(i, parent);
                    }
                }
                10 if !movable.is_empty() => {
                    let i = movable[rng.below(movable.len())];
                    let dn = self.dn(i);
                    if self.has_children(i) && rng.below(2) == 0 {
                        self.nodes[i].name = self.fresh("n");
                        return format!(
                            "dn: {dn}\nchangetype: modrdn\nnewrdn: {}\ndeleteoldrdn: 1\n\n",
                            self.rdn(i)
                        );
                    }
                    if !self.has_children(i) {
                        self.nodes[i].alive = false;
                        return format!("dn: {dn}\nchangetype: delete\n\n");
                    }
                }
                11 => {
                    let devices = self.alive(|n| matches!(n.class, Class::Device { .. }));
                    if devices.is_empty() {
                        continue;
                    }
                    let i = devices[rng.below(devices.len())];
                    let Class::Device { posix } = self.nodes[i].class else {
                        continue;
                    };
                    self.nodes[i].class = Class::Device { posix: !posix };
                    let name = self.nodes[i].name.clone();
                    return aux_class(
                        &self.dn(i),
                        "posixAccount",
                        &posix_attrs(&name, 5000),
                        !posix,
                    );
                }
                12 if !movable.is_empty() => {
                    // A rename in case only: every DN below changes its text.
                    let i = movable[rng.below(movable.len())];
                    let dn = self.dn(i);
                    let name = &self.nodes[i].name;
                    self.nodes[i].name = if name.starts_with(|c: char| c.is_ascii_lowercase()) {
                        name.to_ascii_uppercase()
                    } else {
                        name.to_ascii_lowercase()
                    };
                    return format!(
                        "dn: {dn}\nchangetype: modrdn\nnewrdn: {}\ndeleteoldrdn: 1\n\n",
                        self.rdn(i)
                    );
                }
                13 => {
                    let containers = self.alive(|n| matches!(n.class, Class::Container { .. }));
                    if containers.is_empty() {
                        continue;
                    }
                    let i = containers[rng.below(containers.len())];
                    let Class::Container { org } = self.nodes[i].class else {
                        continue;
                    };
                    self.nodes[i].class = Class::Container { org: !org };
                    let dc = [("dc", format!("d{i}"))];
                    return aux_class(&self.dn(i), "dcObject", &dc, !org);
                }
                _ => {}
            }
        }
    }

    fn move_to(&mut self, i: usize, parent: usize) -> String {
        let dn = self.dn(i);
        self.nodes[i].parent = Some(parent);
        format!(
            "dn: {dn}\nchangetype: modrdn\nnewrdn: {}\ndeleteoldrdn: 1\nnewsuperior: {}\n\n",
            self.rdn(i),
            self.dn(parent)
        )
    }
}

fn seed() -> u64 {
    std::env::var("LDAPGATE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        })
}

fn random_history(sessionlog: bool) {
    let seed = seed();
    eprintln!("LDAPGATE_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let mut tree = Tree::new();
    let mut initial = format!(
        "dn: ou=tenant,{BASE_DN}\nobjectClass: organizationalUnit\nou: tenant\n\n\
         dn: ou=outside,{BASE_DN}\nobjectClass: organizationalUnit\nou: outside\n\n"
    );
    // A start that has something to move: adds only, loaded by slapadd.
    for _ in 0..40 {
        initial.push_str(&tree.add_random(&mut rng).replace("changetype: add\n", ""));
    }
    let slapd = Slapd::start_with_lines_and_ldif(&syncprov(sessionlog), &initial);
    // Random moves out of scope delete many at once: no approvals here.
    let classes = "max_account_deletes = 100000\nmax_org_deletes = 100000\n\
                   [signin]\nuser_object_classes = [\"inetOrgPerson\", \"posixAccount\"]\n\
                   org_object_classes = [\"organizationalUnit\", \"dcObject\"]";
    let mut pullers = Pullers::new(&slapd, &format!("ou=tenant,{BASE_DN}"), classes);
    let mut done = 0;
    let mut pulls = 0;
    let mut refused = 0;
    while done < OPERATIONS {
        let batch = 1 + rng.below(6);
        let mut ldif = String::new();
        for _ in 0..batch {
            // slapd 2.5's back-mdb now and then refuses a valid subtree move
            // ("DN index add failed", 80); the operation is then forgotten.
            let kept = tree.clone();
            let op = tree.operation(&mut rng);
            match slapd.try_modify(&op) {
                Ok(()) => ldif.push_str(&op),
                Err(e) if e.contains("DN index add failed") => {
                    refused += 1;
                    tree = kept;
                }
                Err(e) => panic!("LDAPGATE_TEST_SEED={seed}: {e}"),
            }
        }
        done += batch;
        pulls += 1;
        pullers.pull(&format!(
            "LDAPGATE_TEST_SEED={seed} sessionlog {sessionlog}: pull {pulls} after operation \
             {done}, the last ones:\n{ldif}"
        ));
    }
    eprintln!("{refused} operations refused by slapd");
    pullers.assert_in_step(&format!(
        "LDAPGATE_TEST_SEED={seed} sessionlog {sessionlog}: after {done} operations and {pulls} pulls"
    ));
}

#[test]
fn random_histories_with_a_present_phase() {
    random_history(false);
}

#[test]
fn random_histories_with_the_sessionlog() {
    random_history(true);
}
