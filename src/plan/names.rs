//! The names the user's ssh_config defines, for messages about a name that is none of them:
//! "`nosuchhost` is not an alias in ~/.ssh/config (closest: `nosuch-host`)".
//!
//! Pure: built from a parsed [`SshConfig`], it does no I/O.

use std::path::PathBuf;

use crate::config::SshConfig;

/// The aliases (literal `Host` names) of the ssh_config a chain was planned with, and the
/// files read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigNames {
    /// Literal `Host` names, in reading order (see [`SshConfig::aliases`]).
    pub aliases: Vec<String>,
    /// The files read (none: `-F none`, or no file exists).
    pub files: Vec<PathBuf>,
}

/// At most this many close names are suggested.
const MAX_SUGGESTIONS: usize = 3;

impl ConfigNames {
    /// The names of `config`.
    pub fn of(config: &SshConfig) -> ConfigNames {
        ConfigNames {
            aliases: config.aliases(),
            files: config.files().into_iter().map(PathBuf::from).collect(),
        }
    }

    /// Whether `name` is one of the aliases (as ssh compares host names: ignoring case).
    pub fn is_alias(&self, name: &str) -> bool {
        self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }

    /// The aliases close to `name` (a typo away: edit distance, a swap of two neighbours
    /// counting once), closest first, at most `MAX_SUGGESTIONS`.
    pub fn closest(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        let limit = (name.chars().count() / 3).clamp(1, 3);
        let mut near: Vec<(usize, &str)> = self
            .aliases
            .iter()
            .map(|a| (distance(&name, &a.to_ascii_lowercase()), a.as_str()))
            .filter(|(d, _)| (1..=limit).contains(d))
            .collect();
        near.sort_by_key(|(d, _)| *d);
        near.into_iter()
            .take(MAX_SUGGESTIONS)
            .map(|(_, a)| a)
            .collect()
    }

    /// "`name` is not an alias in FILE (closest: `a`, `b`)", or "... no ssh_config was read".
    pub fn not_an_alias(&self, name: &str) -> String {
        let files: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        let where_ = match files.split_last() {
            None => return format!("`{name}` is not an alias: no ssh_config was read"),
            Some((last, [])) => last.clone(),
            Some((last, before)) => format!("{} or {last}", before.join(", ")),
        };
        let near: Vec<String> = self
            .closest(name)
            .iter()
            .map(|a| format!("`{a}`"))
            .collect();
        match near.as_slice() {
            [] => format!("`{name}` is not an alias in {where_}"),
            _ => format!(
                "`{name}` is not an alias in {where_} (closest: {})",
                near.join(", ")
            ),
        }
    }
}

/// The optimal string alignment distance of `a` and `b`: insertions, deletions, substitutions
/// and swaps of two neighbouring characters, each counting one.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: the distance of a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        if let Some(first) = row.first_mut() {
            *first = i;
        }
    }
    if let Some(first) = rows.first_mut() {
        for (j, cell) in first.iter_mut().enumerate() {
            *cell = j;
        }
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a.get(i - 1) != b.get(j - 1));
            let at = |rows: &Vec<Vec<usize>>, i: usize, j: usize| {
                rows.get(i)
                    .and_then(|r| r.get(j))
                    .copied()
                    .unwrap_or(usize::MAX / 2)
            };
            let mut best = (at(&rows, i - 1, j) + 1)
                .min(at(&rows, i, j - 1) + 1)
                .min(at(&rows, i - 1, j - 1) + cost);
            let swapped =
                i > 1 && j > 1 && a.get(i - 1) == b.get(j - 2) && a.get(i - 2) == b.get(j - 1);
            if swapped {
                best = best.min(at(&rows, i - 2, j - 2) + 1);
            }
            if let Some(cell) = rows.get_mut(i).and_then(|r| r.get_mut(j)) {
                *cell = best;
            }
        }
    }
    rows.last().and_then(|r| r.last()).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(aliases: &[&str], files: &[&str]) -> ConfigNames {
        ConfigNames {
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            files: files.iter().map(PathBuf::from).collect(),
        }
    }

    #[test]
    fn distances() {
        for (a, b, d) in [
            ("", "", 0),
            ("abc", "abc", 0),
            ("bastion", "bastoin", 1),
            ("bastion", "bastio", 1),
            ("bastion", "basti0n", 1),
            ("db-prod", "db-prd", 1),
            ("kitten", "sitting", 3),
            ("", "ab", 2),
        ] {
            assert_eq!(distance(a, b), d, "{a} {b}");
            assert_eq!(distance(b, a), d, "{b} {a}");
        }
    }

    #[test]
    fn close_aliases_are_suggested_and_far_ones_not() {
        let n = names(
            &["bastion", "db-prod", "db-prod2", "inner", "Bastion2"],
            &["/home/me/.ssh/config"],
        );
        assert_eq!(n.closest("bastoin"), ["bastion", "Bastion2"]);
        assert_eq!(n.closest("db-prd"), ["db-prod", "db-prod2"]);
        assert!(n.closest("nosuchhost.invalid").is_empty());
        // The alias itself is not "close".
        assert!(n.closest("inner").is_empty());
        assert!(n.is_alias("INNER") && !n.is_alias("inne"));
        assert_eq!(
            n.not_an_alias("bastoin"),
            "`bastoin` is not an alias in /home/me/.ssh/config (closest: `bastion`, `Bastion2`)"
        );
        assert_eq!(
            n.not_an_alias("nosuchhost.invalid"),
            "`nosuchhost.invalid` is not an alias in /home/me/.ssh/config"
        );
        assert_eq!(
            names(&[], &[]).not_an_alias("x"),
            "`x` is not an alias: no ssh_config was read"
        );
        assert_eq!(
            names(&[], &["/a", "/b", "/c"]).not_an_alias("x"),
            "`x` is not an alias in /a, /b or /c"
        );
        // Short names: one edit at most.
        assert_eq!(names(&["ab", "xy"], &["/a"]).closest("ac"), ["ab"]);
    }
}
