//! `list`: filtered, keyset-paginated task listing.
//!
//! Pages are ordered by (sort key, id) and a cursor names the last row's
//! key, so a page never repeats or skips a row that existed when the walk
//! began, however many tasks are inserted meanwhile.

use crate::row::{self, TASK_COLUMNS};
use storage_kit::exports::todo::plugin::task_store::{
    PageRequest, SortField, SortOrder, StoreError, TaskFilter, TaskPage,
};
use storage_kit::failure::Failure;
use storage_kit::todo::plugin::sql::{self, Value};
use storage_kit::todo::plugin::types::Task;

/// Tasks without a due date sort after every dated task (ascending): their
/// sort key is the last representable instant, 9999-12-31T23:59:59.999999Z.
/// The expression matches the `tasks_due_sort_idx` index of migrations/.
const DUE_SORT_EXPRESSION: &str = "COALESCE(due_at, '9999-12-31 23:59:59.999999+00'::timestamptz)";
const NO_DUE_DATE: i64 = 253_402_300_799_999_999;

pub fn list(owner_scope: Option<String>, filter: TaskFilter, page: PageRequest) -> Result<TaskPage, Failure> {
    let mut query = Query::default();
    if let Some(owner) = owner_scope {
        query.condition("owner_id = {}", Value::Uuid(Some(owner)));
    }
    if let Some(owner) = filter.owner_id {
        query.condition("owner_id = {}", Value::Uuid(Some(owner)));
    }
    if let Some(status) = filter.status {
        query.condition("status = {}", Value::Text(Some(row::status_name(status).into())));
    }
    if let Some(priority) = filter.priority {
        query.condition("priority = {}", Value::Int(Some(row::priority_rank(priority))));
    }
    if let Some(before) = filter.due_before {
        query.condition("due_at < {}", Value::Timestamp(Some(before)));
    }
    if let Some(after) = filter.due_after {
        query.condition("due_at > {}", Value::Timestamp(Some(after)));
    }
    if let Some(text) = filter.title_contains {
        query.condition("title ILIKE {} ESCAPE '\\'", Value::Text(Some(like_pattern(&text))));
    }

    let key = SortKey::new(page.sort);
    let (comparison, direction) = match page.order {
        SortOrder::Asc => (">", "ASC"),
        SortOrder::Desc => ("<", "DESC"),
    };
    if let Some(cursor) = &page.cursor {
        let (last_key, last_id) = decode_cursor(cursor)?;
        let key_param = query.param(key.value(last_key));
        let id_param = query.param(Value::Uuid(Some(last_id)));
        query.conditions.push(format!("({}, id) {comparison} ({key_param}, {id_param})", key.expression));
    }

    let limit = page.limit.max(1);
    // One row more than asked tells whether another page follows.
    let limit_param = query.param(Value::Int(Some(i64::from(limit) + 1)));
    let where_clause =
        if query.conditions.is_empty() { String::new() } else { format!(" WHERE {}", query.conditions.join(" AND ")) };
    let statement = format!(
        "SELECT {TASK_COLUMNS} FROM tasks{where_clause} \
         ORDER BY {} {direction}, id {direction} LIMIT {limit_param}",
        key.expression
    );

    let rows = sql::query(&statement, &query.params)?;
    let mut items = rows.rows.into_iter().map(row::task_from_row).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| encode_cursor(key.of(last), &last.id))
    } else {
        None
    };
    Ok(TaskPage { items, next_cursor })
}

#[derive(Default)]
struct Query {
    conditions: Vec<String>,
    params: Vec<Value>,
}

impl Query {
    /// Adds a parameter and answers its placeholder.
    fn param(&mut self, value: Value) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    /// Adds `template` with its `{}` replaced by a placeholder for `value`.
    fn condition(&mut self, template: &str, value: Value) {
        let placeholder = self.param(value);
        self.conditions.push(template.replace("{}", &placeholder));
    }
}

struct SortKey {
    field: SortField,
    expression: &'static str,
}

impl SortKey {
    fn new(field: SortField) -> Self {
        let expression = match field {
            SortField::CreatedAt => "created_at",
            SortField::DueAt => DUE_SORT_EXPRESSION,
            SortField::Priority => "priority",
        };
        Self { field, expression }
    }

    fn of(&self, task: &Task) -> i64 {
        match self.field {
            SortField::CreatedAt => task.created_at,
            SortField::DueAt => task.due_at.unwrap_or(NO_DUE_DATE),
            SortField::Priority => row::priority_rank(task.priority),
        }
    }

    fn value(&self, key: i64) -> Value {
        match self.field {
            SortField::CreatedAt | SortField::DueAt => Value::Timestamp(Some(key)),
            SortField::Priority => Value::Int(Some(key)),
        }
    }
}

fn encode_cursor(key: i64, id: &str) -> String {
    format!("{key}:{id}")
}

fn decode_cursor(cursor: &str) -> Result<(i64, String), Failure> {
    cursor
        .split_once(':')
        .and_then(|(key, id)| Some((key.parse().ok()?, id.to_string())))
        .filter(|(_, id)| id.len() == 36)
        .ok_or_else(|| Failure::rejected(StoreError::Invalid("the cursor is malformed".into())))
}

/// `%text%` with LIKE's wildcards in `text` escaped.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for character in text.chars() {
        if matches!(character, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern.push('%');
    pattern
}
