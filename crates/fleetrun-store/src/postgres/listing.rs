//! The ListCommands / ListCommandInvocations queries: filters, newest-first order, keyset paging;
//! and the by-key page query the node and document listings share ([`key_page_sql`]).
//!
//! The list SQL is built in one place ([`list_commands_sql`], [`list_invocations_sql`]) so the
//! `EXPLAIN` helpers check exactly what runs. The paging key means what it means on SQLite:
//! `(requested_at, seq)` of the last row (plus the node id for invocations), compared as a row, so
//! a NextToken issued by one server continues on any other server of the same database.

use fleetrun_core::clock::Millis;
use fleetrun_core::command::{Invocation, ListedCommand};
use fleetrun_core::query::{CommandQuery, ExecutionStage, PageKey, StatusMatch};

use super::commands::{invocation_from_row, listed_from_row, INVOCATION_COLUMNS, LISTED_COLUMNS};
use super::{query_listing, Param, Result};

/// A list query ready to run: SQL with numbered parameters and their values.
#[derive(Debug, Clone)]
pub(crate) struct BuiltQuery {
    pub(crate) sql: String,
    pub(crate) params: Vec<Param>,
    /// The LIMIT: the most rows the query returns.
    pub(crate) limit: usize,
}

/// ANDed WHERE terms and their parameters.
#[derive(Default)]
struct Terms {
    terms: Vec<String>,
    params: Vec<Param>,
}

impl Terms {
    /// Adds a term whose `?` placeholders stand for `values`, in order.
    fn push(&mut self, term: &str, values: impl IntoIterator<Item = Param>) {
        let mut sql = String::with_capacity(term.len() + 4);
        let mut values = values.into_iter();
        for ch in term.chars() {
            match ch {
                '?' => {
                    if let Some(v) = values.next() {
                        self.params.push(v);
                    }
                    sql.push_str(&format!("${}", self.params.len()));
                }
                other => sql.push(other),
            }
        }
        self.terms.push(sql);
    }

    /// `order_by` `None`: the filters admit at most one row, so no order is asked for (and the
    /// planner adds no Sort to the unique index read).
    fn finish(self, select_from: &str, order_by: Option<&str>, limit: usize) -> BuiltQuery {
        let mut sql = String::from(select_from);
        if !self.terms.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.terms.join(" AND "));
        }
        if let Some(order_by) = order_by {
            sql.push_str(" ORDER BY ");
            sql.push_str(order_by);
        }
        // A literal, not a parameter: the planner then knows how few rows are wanted.
        sql.push_str(&format!(" LIMIT {limit}"));
        BuiltQuery {
            sql,
            params: self.params,
            limit,
        }
    }
}

/// One page of a listing ordered by the text column `key` (nodes by id, documents by name),
/// strictly after `after`: with the key indexed, a range read of `limit` entries and no sort.
/// Run it with [`query_listing`] (its plan settings keep the index order even on a small table).
pub(crate) fn key_page_sql(
    select_from: &str,
    key: &str,
    after: Option<&str>,
    limit: usize,
) -> BuiltQuery {
    let mut t = Terms::default();
    if let Some(after) = after {
        t.push(&format!("{key} > ?"), [text(after)]);
    }
    t.finish(select_from, Some(key), limit)
}

fn text(s: &str) -> Param {
    Param::Text(s.to_string())
}

/// Keeps only the tighter of `InvokedBefore` and the keyset bound (as on SQLite): given both, the
/// index range would start at one and filter on the other, which on a deep page walks every row
/// already paged. If the cursor is older than `before` the cursor implies `before`; otherwise
/// every row older than `before` is past the cursor.
fn upper_bound(
    before: Option<Millis>,
    after: Option<&PageKey>,
) -> (Option<Millis>, Option<&PageKey>) {
    match (before, after) {
        (Some(until), Some(key)) if key.requested_at < until => (None, Some(key)),
        (Some(until), Some(_)) => (Some(until), None),
        other => other,
    }
}

/// The equality filter whose index a page is read through: `column = value`, where the index is
/// `(column, requested_at, seq[, instance_id])`.
///
/// Why not plain `column = $1 ... ORDER BY requested_at DESC, seq DESC`: then `column` is a
/// constant to the planner, every index ending in `(requested_at, seq)` gives that order, and
/// with statistics it may prefer `commands_by_time` and filter — fine while matching rows are
/// spread evenly over time, a walk of the whole table when they are all old (stuck Pending
/// commands). Written as a range on the leading column with the order including it, only the
/// intended index gives the order without a sort, so the plan is one backward range read of that
/// index whatever the statistics say. The range `column BETWEEN value AND value` and the row
/// bounds below select exactly the rows the equality would.
struct Lead {
    column: &'static str,
    value: Param,
}

impl Lead {
    /// The lower bound: `column = value` and, with `from`, `requested_at >= from`.
    fn lower(&self, t: &mut Terms, time: &str, seq: &str, from: Option<Millis>) {
        let column = self.column;
        match from {
            Some(from) => t.push(
                &format!("({column}, {time}, {seq}) >= (?, ?, ?)"),
                [self.value.clone(), Param::Int(from), Param::Int(i64::MIN)],
            ),
            None => t.push(&format!("{column} >= ?"), [self.value.clone()]),
        }
    }

    /// The upper bound: `column = value` and `requested_at < until`, or `(requested_at, seq) <
    /// key` (`or_equal`: `<=`, for invocations whose node tiebreak is checked separately).
    fn upper(
        &self,
        t: &mut Terms,
        time: &str,
        seq: &str,
        until: Option<Millis>,
        key: Option<&PageKey>,
        or_equal: bool,
    ) {
        let column = self.column;
        let op = if or_equal { "<=" } else { "<" };
        match (until, key) {
            (_, Some(key)) => t.push(
                &format!("({column}, {time}, {seq}) {op} (?, ?, ?)"),
                [
                    self.value.clone(),
                    Param::Int(key.requested_at),
                    Param::Int(key.seq),
                ],
            ),
            (Some(until), None) => t.push(
                &format!("({column}, {time}, {seq}) < (?, ?, ?)"),
                [self.value.clone(), Param::Int(until), Param::Int(i64::MIN)],
            ),
            (None, None) => t.push(&format!("{column} <= ?"), [self.value.clone()]),
        }
    }
}

/// The ListCommands SQL for one page.
///
/// With an `InstanceId` filter the query is driven from that node's invocations (index
/// `invocations_by_node`, whose `requested_at` mirrors the command's) and joins each command by
/// seq; otherwise it reads `commands` through the index of one equality filter (see [`Lead`]:
/// Status, then DocumentName, then ExecutionStage; the others filter that read), or through
/// `commands_by_time` when there is none. A `CommandId` filter admits one command at most: read by
/// the unique index, with no order.
pub(crate) fn list_commands_sql(
    q: &CommandQuery,
    after: Option<&PageKey>,
    limit: usize,
) -> BuiltQuery {
    let mut t = Terms::default();
    let (select_from, time, seq) = match &q.instance_id {
        Some(_) => (
            format!(
                "SELECT {LISTED_COLUMNS} FROM invocations i \
                 JOIN commands c ON c.seq = i.command_seq"
            ),
            "i.requested_at",
            "i.command_seq",
        ),
        None => (
            format!("SELECT {LISTED_COLUMNS} FROM commands c"),
            "c.requested_at",
            "c.seq",
        ),
    };
    let mut equal: Vec<Lead> = Vec::new();
    if let Some(node) = &q.instance_id {
        equal.push(Lead {
            column: "i.instance_id",
            value: text(node.as_str()),
        });
    }
    for status in &q.statuses {
        equal.push(match status {
            StatusMatch::Status(s) => Lead {
                column: "c.status",
                value: text(s),
            },
            StatusMatch::Details(s) => Lead {
                column: "c.status_details",
                value: text(s),
            },
        });
    }
    for name in &q.document_names {
        equal.push(Lead {
            column: "c.document_name",
            value: text(name),
        });
    }
    if let Some(stage) = q.stage {
        equal.push(Lead {
            column: "c.terminal",
            value: Param::Bool(stage == ExecutionStage::Complete),
        });
    }
    let (before, after) = upper_bound(q.invoked_before, after);
    let order_by = match &q.command_id {
        Some(cid) => {
            // At most one row: plain equalities (with an InstanceId, the invocations' primary key
            // (command_id, instance_id) finds it).
            let id = if q.instance_id.is_some() {
                "i.command_id"
            } else {
                "c.command_id"
            };
            t.push(&format!("{id} = ?"), [text(cid.as_str())]);
            for e in equal {
                t.push(&format!("{} = ?", e.column), [e.value]);
            }
            plain_time_bounds(&mut t, time, seq, q.invoked_after, before, after);
            None
        }
        None => {
            let mut equal = equal.into_iter();
            let lead = equal.next();
            for e in equal {
                t.push(&format!("{} = ?", e.column), [e.value]);
            }
            match lead {
                Some(lead) => {
                    lead.lower(&mut t, time, seq, q.invoked_after);
                    lead.upper(&mut t, time, seq, before, after, false);
                    Some(format!("{} DESC, {time} DESC, {seq} DESC", lead.column))
                }
                None => {
                    plain_time_bounds(&mut t, time, seq, q.invoked_after, before, after);
                    Some(format!("{time} DESC, {seq} DESC"))
                }
            }
        }
    };
    t.finish(&select_from, order_by.as_deref(), limit)
}

/// InvokedAfter, InvokedBefore and the keyset bound as plain comparisons (the index read is on
/// `(requested_at, seq)` itself, or the filters admit one row).
fn plain_time_bounds(
    t: &mut Terms,
    time: &str,
    seq: &str,
    from: Option<Millis>,
    until: Option<Millis>,
    key: Option<&PageKey>,
) {
    if let Some(from) = from {
        t.push(&format!("{time} >= ?"), [Param::Int(from)]);
    }
    if let Some(until) = until {
        t.push(&format!("{time} < ?"), [Param::Int(until)]);
    }
    if let Some(key) = key {
        t.push(
            &format!("({time}, {seq}) < (?, ?)"),
            [Param::Int(key.requested_at), Param::Int(key.seq)],
        );
    }
}

/// The ListCommandInvocations SQL for one page: newest command first, then node id descending.
///
/// `Status` matches the invocation's coarse status or its fine state; `stage` does not apply to
/// invocations and is ignored. The index read: `CommandId` (with `InstanceId`: one row) → the
/// primary key `(command_id, instance_id)`, whose node order is the listing's order within one
/// command; `InstanceId` → `invocations_by_node`; then Status, DocumentName as [`Lead`]s; none →
/// `invocations_by_time`.
pub(crate) fn list_invocations_sql(
    q: &CommandQuery,
    after: Option<&PageKey>,
    limit: usize,
) -> BuiltQuery {
    let mut t = Terms::default();
    let (time, seq, node) = ("i.requested_at", "i.command_seq", "i.instance_id");
    let mut equal: Vec<Lead> = Vec::new();
    if let Some(n) = &q.instance_id {
        equal.push(Lead {
            column: "i.instance_id",
            value: text(n.as_str()),
        });
    }
    for status in &q.statuses {
        equal.push(match status {
            StatusMatch::Status(s) => Lead {
                column: "i.status",
                value: text(s),
            },
            StatusMatch::Details(s) => Lead {
                column: "i.state",
                value: text(s),
            },
        });
    }
    for name in &q.document_names {
        equal.push(Lead {
            column: "i.document_name",
            value: text(name),
        });
    }
    let (before, after) = upper_bound(q.invoked_before, after);
    // The exact keyset bound; where an index range implies it, it is only rechecked.
    let keyset = |t: &mut Terms| {
        if let Some(key) = after {
            match &key.instance_id {
                Some(n) => t.push(
                    &format!("({time}, {seq}, {node}) < (?, ?, ?)"),
                    [Param::Int(key.requested_at), Param::Int(key.seq), text(n)],
                ),
                None => t.push(
                    &format!("({time}, {seq}) < (?, ?)"),
                    [Param::Int(key.requested_at), Param::Int(key.seq)],
                ),
            }
        }
    };
    let time_filters = |t: &mut Terms| {
        if let Some(from) = q.invoked_after {
            t.push(&format!("{time} >= ?"), [Param::Int(from)]);
        }
        if let Some(until) = before {
            t.push(&format!("{time} < ?"), [Param::Int(until)]);
        }
    };
    let order_by = if let Some(cid) = &q.command_id {
        for e in equal.iter().skip(usize::from(q.instance_id.is_some())) {
            t.push(&format!("{} = ?", e.column), [e.value.clone()]);
        }
        time_filters(&mut t);
        keyset(&mut t);
        match &q.instance_id {
            Some(n) => {
                // The primary key: one row at most.
                t.push("i.command_id = ?", [text(cid.as_str())]);
                t.push("i.instance_id = ?", [text(n.as_str())]);
                None
            }
            None => {
                // Within one command the order is the node's: the primary key, backwards.
                t.push(
                    "i.command_id >= ? AND i.command_id <= ?",
                    [text(cid.as_str()), text(cid.as_str())],
                );
                Some(format!("i.command_id DESC, {node} DESC"))
            }
        }
    } else {
        let mut rest = equal.into_iter();
        let lead = rest.next();
        for e in rest {
            t.push(&format!("{} = ?", e.column), [e.value]);
        }
        match lead {
            // invocations_by_node has no trailing node column (the node is the lead): the range
            // ends at (node, requested_at, seq) inclusive and the keyset recheck does the rest.
            Some(lead) if lead.column == node => {
                lead.lower(&mut t, time, seq, q.invoked_after);
                lead.upper(&mut t, time, seq, before, after, true);
                keyset(&mut t);
                Some(format!("{node} DESC, {time} DESC, {seq} DESC"))
            }
            Some(lead) => {
                let column = lead.column;
                match q.invoked_after {
                    Some(from) => t.push(
                        &format!("({column}, {time}, {seq}, {node}) >= (?, ?, ?, ?)"),
                        [
                            lead.value.clone(),
                            Param::Int(from),
                            Param::Int(i64::MIN),
                            text(""),
                        ],
                    ),
                    None => t.push(&format!("{column} >= ?"), [lead.value.clone()]),
                }
                match after {
                    Some(PageKey {
                        requested_at,
                        seq: key_seq,
                        instance_id: Some(n),
                    }) => t.push(
                        &format!("({column}, {time}, {seq}, {node}) < (?, ?, ?, ?)"),
                        [
                            lead.value.clone(),
                            Param::Int(*requested_at),
                            Param::Int(*key_seq),
                            text(n),
                        ],
                    ),
                    _ => lead.upper(&mut t, time, seq, before, after, false),
                }
                Some(format!(
                    "{column} DESC, {time} DESC, {seq} DESC, {node} DESC"
                ))
            }
            None => {
                time_filters(&mut t);
                keyset(&mut t);
                Some(format!("{time} DESC, {seq} DESC, {node} DESC"))
            }
        }
    };
    let select_from = format!("SELECT {INVOCATION_COLUMNS} FROM invocations i");
    t.finish(&select_from, order_by.as_deref(), limit)
}

pub(crate) async fn list_commands(
    c: &tokio_postgres::Client,
    q: &BuiltQuery,
) -> Result<Vec<ListedCommand>> {
    let rows = query_listing(c, &q.sql, &q.params).await?;
    debug_assert!(rows.len() <= q.limit);
    rows.iter().map(listed_from_row).collect()
}

pub(crate) async fn list_invocations(
    c: &tokio_postgres::Client,
    q: &BuiltQuery,
) -> Result<Vec<Invocation>> {
    let rows = query_listing(c, &q.sql, &q.params).await?;
    rows.iter().map(invocation_from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetrun_core::ids::{CommandId, InstanceId};

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut q = CommandQuery {
            statuses: vec![StatusMatch::Status("Failed")],
            invoked_after: Some(5),
            ..Default::default()
        };
        q.document_names.push("Doc".into());
        let key = PageKey {
            requested_at: 9,
            seq: 3,
            instance_id: None,
        };
        let built = list_commands_sql(&q, Some(&key), 51);
        assert!(
            built.sql.ends_with(
                "WHERE c.document_name = $1 \
                 AND (c.status, c.requested_at, c.seq) >= ($2, $3, $4) \
                 AND (c.status, c.requested_at, c.seq) < ($5, $6, $7) \
                 ORDER BY c.status DESC, c.requested_at DESC, c.seq DESC LIMIT 51"
            ),
            "{}",
            built.sql
        );
        assert_eq!(built.params.len(), 7);
    }

    #[test]
    fn a_command_id_filter_asks_for_no_order() {
        let q = CommandQuery {
            command_id: Some(CommandId::generate()),
            ..Default::default()
        };
        let built = list_commands_sql(&q, None, 51);
        assert!(!built.sql.contains("ORDER BY"), "{}", built.sql);
        let q = CommandQuery {
            instance_id: InstanceId::parse("mi-0123456789abcdef0"),
            ..q
        };
        let built = list_commands_sql(&q, None, 51);
        assert!(built.sql.contains("i.command_id = $1"), "{}", built.sql);
    }
}
