//! What each kind of action sends for a job: the Telegram text, the webhook body, the MCP
//! tool arguments. Workers send these; the API's trigger test shows them.

use serde_json::{Map, Value};

use super::{Escape, RenderError, context, render};
use crate::job::Job;
use crate::trigger::{ParseMode, TelegramAction};

/// Telegram's limit on one message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// Most a Telegram template may write before the message is cut to [`MAX_MESSAGE_CHARS`].
pub const MAX_TELEGRAM_RENDER_BYTES: usize = 64 * 1024;

/// Most a webhook body template may write.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Most the rendered strings of one MCP call's arguments may hold together.
pub const MAX_MCP_ARGUMENTS_BYTES: usize = 256 * 1024;

const DEFAULT_TELEGRAM_TEMPLATE: &str = "{{ trigger.name }}: {{ event.event_type }} for agent {{ event.agent_id }} on {{ chain.name }}\
{% if event.value is defined %}, value {{ event.value }}{% endif %}\
{% if event.tag1 %} ({{ event.tag1 }}){% endif %} at block {{ event.block_number }}";

/// The Telegram message: inserted values are escaped for the parse mode, the template's own
/// markup is kept, and the text is cut to Telegram's limit.
pub fn telegram_message(job: &Job, action: &TelegramAction) -> Result<String, RenderError> {
    let escape = match action.parse_mode {
        ParseMode::Html => Escape::Html,
        ParseMode::MarkdownV2 => Escape::MarkdownV2,
        ParseMode::Plain => Escape::Plain,
    };
    let source = action.template.as_deref().unwrap_or(DEFAULT_TELEGRAM_TEMPLATE);
    let text = render(escape, source, &context(job), MAX_TELEGRAM_RENDER_BYTES)?;
    Ok(truncate(&text, action.parse_mode))
}

/// Cuts a message to Telegram's limit without leaving half an escape, entity or tag.
pub fn truncate(text: &str, mode: ParseMode) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    match mode {
        ParseMode::Html => {
            if let Some(open) = cut.rfind(['<', '&'])
                && !cut[open..].contains(['>', ';'])
            {
                cut.truncate(open);
            }
        }
        ParseMode::MarkdownV2 => {
            let trailing = cut.chars().rev().take_while(|c| *c == '\\').count();
            if trailing % 2 == 1 {
                cut.pop();
            }
        }
        ParseMode::Plain => {}
    }
    cut.push('…');
    cut
}

/// The MCP tool arguments: every string in them is a template, rendered with the job's
/// context; other values are sent as written. Together the rendered strings hold at most
/// [`MAX_MCP_ARGUMENTS_BYTES`].
pub fn mcp_arguments(job: &Job, arguments: &Map<String, Value>) -> Result<Map<String, Value>, RenderError> {
    /// Renders every string of `value`, from what is left of the budget.
    fn walk(value: &Value, context: &Value, left: &mut usize) -> Result<Value, RenderError> {
        Ok(match value {
            Value::String(source) => {
                let text = render(Escape::Plain, source, context, MAX_MCP_ARGUMENTS_BYTES)?;
                *left = left.checked_sub(text.len()).ok_or_else(|| {
                    RenderError::Budget(format!(
                        "the arguments' strings hold more than {MAX_MCP_ARGUMENTS_BYTES} bytes together"
                    ))
                })?;
                Value::String(text)
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| walk(v, context, left)).collect::<Result<_, _>>()?)
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), walk(v, context, left)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
            other => other.clone(),
        })
    }
    let context = context(job);
    let mut left = MAX_MCP_ARGUMENTS_BYTES;
    arguments.iter().map(|(k, v)| Ok((k.clone(), walk(v, &context, &mut left)?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{escape_html, escape_markdown_v2};

    #[test]
    fn markdown_v2_escapes_every_special_character() {
        assert_eq!(escape_markdown_v2("_*[]()~`>#+-=|{}.!"), "\\_\\*\\[\\]\\(\\)\\~\\`\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!");
        assert_eq!(escape_markdown_v2("a\\b"), "a\\\\b");
    }

    #[test]
    fn html_escapes_markup() {
        assert_eq!(escape_html("<b>&\"x\""), "&lt;b&gt;&amp;&quot;x&quot;");
    }

    #[test]
    fn long_messages_are_cut_cleanly() {
        let html = format!("{}&amp;", "x".repeat(4093));
        let cut = truncate(&html, ParseMode::Html);
        assert_eq!(cut.chars().count(), 4094);
        assert!(cut.ends_with("xxx…"), "no half entity: {}", &cut[cut.len() - 10..]);
        let md = format!("{}\\.zz", "y".repeat(4094));
        let cut = truncate(&md, ParseMode::MarkdownV2);
        assert!(cut.chars().count() <= MAX_MESSAGE_CHARS);
        assert!(cut.ends_with("y…"), "no dangling backslash");
        assert_eq!(truncate("short", ParseMode::Plain), "short");
    }
}
