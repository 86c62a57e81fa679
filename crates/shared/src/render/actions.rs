//! What each kind of action sends for a job: the Telegram text, the webhook body, the MCP
//! tool arguments. Workers send these; the API's trigger test shows them.

use serde_json::{Map, Value};

use super::{Escape, MARKDOWN_V2_SPECIAL, RenderError, TEMPLATE_FUEL, context, render, render_with_fuel};
use crate::job::Job;
use crate::trigger::{ParseMode, TelegramAction};

/// Telegram's limit on one message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// Most a webhook body template may write.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Most the rendered strings of one MCP call's arguments may hold together.
pub const MAX_MCP_ARGUMENTS_BYTES: usize = 256 * 1024;

/// Most strings (templates) in one MCP action's arguments; they share one render's fuel.
pub const MAX_MCP_TEMPLATES: usize = 64;

const DEFAULT_TELEGRAM_TEMPLATE: &str = "{{ trigger.name }}: {{ event.event_type }} for agent {{ event.agent_id }} on {{ chain.name }}\
{% if event.value is defined %}, value {{ event.value }}{% endif %}\
{% if event.tag1 %} ({{ event.tag1 }}){% endif %} at block {{ event.block_number }}";

/// The Telegram message: inserted values are escaped for the parse mode, the template's own
/// markup is kept, and the text is cut to Telegram's limit. Only fuel bounds it (a long
/// message is cut, never refused), so chain text of any length cannot silence an alert.
pub fn telegram_message(job: &Job, action: &TelegramAction) -> Result<String, RenderError> {
    let escape = match action.parse_mode {
        ParseMode::Html => Escape::Html,
        ParseMode::MarkdownV2 => Escape::MarkdownV2,
        ParseMode::Plain => Escape::Message,
    };
    let source = action.template.as_deref().unwrap_or(DEFAULT_TELEGRAM_TEMPLATE);
    let text = render(escape, source, &context(job), usize::MAX)?;
    Ok(truncate(&text, action.parse_mode))
}

/// Cuts a message to Telegram's limit without leaving half an escape, entity or tag. A cut
/// message loses its markup (tags, or MarkdownV2's unescaped marks): a cut may fall between
/// an opening and its closing, which Telegram would refuse, and the alert must go out.
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
            cut = without_tags(&cut);
        }
        ParseMode::MarkdownV2 => {
            let trailing = cut.chars().rev().take_while(|c| *c == '\\').count();
            if trailing % 2 == 1 {
                cut.pop();
            }
            cut = without_marks(&cut);
        }
        ParseMode::Plain => {}
    }
    cut.push('…');
    cut
}

/// HTML text without its tags; inserted values are escaped, so every `<` opens a tag.
fn without_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => in_tag = true,
            (true, '>') => in_tag = false,
            (false, c) => out.push(c),
            (true, _) => {}
        }
    }
    out
}

/// MarkdownV2 text without its unescaped marks; escaped characters stay escaped.
fn without_marks(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut chars = markdown.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(c);
            out.extend(chars.next());
        } else if !MARKDOWN_V2_SPECIAL.contains(c) {
            out.push(c);
        }
    }
    out
}

/// How many strings (templates) `value` holds, at any depth.
pub fn template_count(value: &Value) -> usize {
    match value {
        Value::String(_) => 1,
        Value::Array(items) => items.iter().map(template_count).sum(),
        Value::Object(map) => map.values().map(template_count).sum(),
        _ => 0,
    }
}

/// The MCP tool arguments: every string in them is a template, rendered with the job's
/// context; other values are sent as written. The strings share one render's fuel, and
/// together they hold at most [`MAX_MCP_ARGUMENTS_BYTES`].
pub fn mcp_arguments(job: &Job, arguments: &Map<String, Value>) -> Result<Map<String, Value>, RenderError> {
    /// Renders every string of `value`, each with `fuel`, from what is left of the output.
    fn walk(value: &Value, context: &Value, left: &mut usize, fuel: u64) -> Result<Value, RenderError> {
        Ok(match value {
            Value::String(source) => {
                let text = render_with_fuel(Escape::Plain, source, context, MAX_MCP_ARGUMENTS_BYTES, fuel)?;
                *left = left.checked_sub(text.len()).ok_or_else(|| {
                    RenderError::Budget(format!(
                        "the arguments' strings hold more than {MAX_MCP_ARGUMENTS_BYTES} bytes together"
                    ))
                })?;
                Value::String(text)
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| walk(v, context, left, fuel)).collect::<Result<_, _>>()?)
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), walk(v, context, left, fuel)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
            other => other.clone(),
        })
    }
    let templates: usize = arguments.values().map(template_count).sum();
    let fuel = TEMPLATE_FUEL / u64::try_from(templates.max(1)).unwrap_or(u64::MAX);
    let context = context(job);
    let mut left = MAX_MCP_ARGUMENTS_BYTES;
    arguments.iter().map(|(k, v)| Ok((k.clone(), walk(v, &context, &mut left, fuel)?))).collect()
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
