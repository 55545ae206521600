//! Chat templates: the Llama 3 header format, and a model's own Jinja template (a GGUF's
//! `tokenizer.chat_template`, e.g. SmolLM2's ChatML, or a Hugging Face checkpoint's
//! `tokenizer_config.json`) rendered with minijinja, with Python string methods from
//! minijinja-contrib because Hugging Face templates call them (`.strip()`, `.startswith()`), and
//! transformers' template globals: `raise_exception`, and `strftime_now(format)` formatting the
//! current date (UTC) like Python's `datetime.now().strftime`.

use serde::Serialize;

use crate::text::tokenizer::Tokenizer;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into() }
    }
}

#[derive(Debug, Clone)]
pub enum ChatTemplate {
    /// Llama 3's `<|start_header_id|>role<|end_header_id|>\n\n content <|eot_id|>` format.
    Llama3,
    /// A Jinja template (Hugging Face `chat_template` syntax).
    Jinja(String),
    /// No template known: "User: ... / Assistant:" plain text.
    Plain,
}

impl ChatTemplate {
    /// The model file's template if it has one, else Llama 3's when the vocabulary has its header
    /// tokens, else plain text.
    pub fn for_tokenizer(tokenizer: &Tokenizer) -> Self {
        if let Some(t) = tokenizer.chat_template() {
            ChatTemplate::Jinja(t.to_string())
        } else if tokenizer.token_to_id("<|start_header_id|>").is_some() {
            ChatTemplate::Llama3
        } else {
            ChatTemplate::Plain
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ChatTemplate::Llama3 => "llama3",
            ChatTemplate::Jinja(_) => "embedded jinja",
            ChatTemplate::Plain => "plain",
        }
    }

    /// Renders the conversation, ending with the assistant's header when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool, bos: &str, eos: &str) -> Result<String> {
        match self {
            ChatTemplate::Llama3 => {
                let mut s = String::from(bos);
                for m in messages {
                    s.push_str(&format!("<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>", m.role.as_str(), m.content.trim()));
                }
                if add_generation_prompt {
                    s.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
                }
                Ok(s)
            }
            ChatTemplate::Plain => {
                let mut s = String::new();
                for m in messages {
                    let who = match m.role {
                        Role::System => "System",
                        Role::User => "User",
                        Role::Assistant => "Assistant",
                    };
                    s.push_str(&format!("{who}: {}\n", m.content.trim()));
                }
                if add_generation_prompt {
                    s.push_str("Assistant:");
                }
                Ok(s)
            }
            ChatTemplate::Jinja(source) => {
                let mut env = minijinja::Environment::new();
                env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
                env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
                    Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
                });
                env.add_function("strftime_now", |fmt: String| strftime(&fmt, unix_now()));
                env.add_template("chat", source).map_err(|e| Error::ChatTemplate(e.to_string()))?;
                let tmpl = env.get_template("chat").map_err(|e| Error::ChatTemplate(e.to_string()))?;
                tmpl.render(minijinja::context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => bos,
                    eos_token => eos,
                })
                .map_err(|e| Error::ChatTemplate(e.to_string()))
            }
        }
    }
}

/// Renders and tokenizes a conversation for generation.
///
/// A Hugging Face checkpoint's own template (from `tokenizer_config.json`) is used as
/// transformers' `apply_chat_template(messages, add_generation_prompt=True)` does: rendered with
/// the config's `bos_token` / `eos_token` and tokenized without adding special tokens. Otherwise
/// (GGUF files, as llama.cpp does) BOS is added exactly once: by the template when it writes it,
/// else by the tokenizer when the model expects one.
pub fn encode_chat(tokenizer: &Tokenizer, template: &ChatTemplate, messages: &[Message]) -> Result<Vec<u32>> {
    if let (Some(tokens), ChatTemplate::Jinja(_)) = (tokenizer.checkpoint_tokens(), template) {
        let text = template.render(messages, true, &tokens.bos, &tokens.eos)?;
        return tokenizer.encode(&text, false);
    }
    let bos = tokenizer.bos().and_then(|id| tokenizer.id_to_token(id)).unwrap_or_default();
    let eos = tokenizer.stop_tokens().first().and_then(|&id| tokenizer.id_to_token(id)).unwrap_or_default();
    let bos_for_template = if tokenizer.adds_bos() { bos.as_str() } else { "" };
    let text = template.render(messages, true, bos_for_template, &eos)?;
    let template_wrote_bos = !bos_for_template.is_empty() && text.starts_with(bos_for_template);
    tokenizer.encode(&text, tokenizer.adds_bos() && !template_wrote_bos)
}

/// [`encode_chat`] for a conversation that must leave room for an answer of `answer_tokens` in a
/// context of `context` tokens: the oldest turns (a question and its answer at a time) are
/// dropped from `history` until the prompt and a full answer fit, keeping at least the last
/// message. The prompt may still be longer than the context when that message alone is.
pub fn encode_chat_within(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    history: &mut Vec<Message>,
    answer_tokens: usize,
    context: usize,
) -> Result<Vec<u32>> {
    loop {
        let ids = encode_chat(tokenizer, template, history)?;
        if ids.len() + answer_tokens <= context || history.len() <= 1 {
            return Ok(ids);
        }
        history.drain(..2.min(history.len() - 1));
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Python's `strftime` for the directives chat templates use (`%d %b %Y`, `%B`, `%m`, `%y`, `%e`,
/// `%H:%M:%S`, `%a`, `%A`, `%j`, `%%`), in UTC, English names; other directives are kept as written.
/// Calendar: days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
pub fn strftime(format: &str, unix_seconds: i64) -> String {
    const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_march = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_march + 2) / 153;
    let day = doy_march - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before_month = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][(month - 1) as usize];
    let day_of_year = before_month + day + i64::from(leap && month > 2);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let month_name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('b') => out.push_str(&month_name[..3]),
            Some('B') => out.push_str(month_name),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('H') => out.push_str(&format!("{:02}", secs / 3600)),
            Some('M') => out.push_str(&format!("{:02}", secs / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", secs % 60)),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('j') => out.push_str(&format!("{day_of_year:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_dates_as_python_does() {
        // Values from Python: datetime.fromtimestamp(t, timezone.utc).strftime(...).
        assert_eq!(strftime("%d %b %Y", 1_721_952_000), "26 Jul 2024");
        assert_eq!(strftime("%A %d %B %Y %H:%M:%S %j %y %%", 951_782_400 + 3_723), "Tuesday 29 February 2000 01:02:03 060 00 %");
        assert_eq!(strftime("%a %e %m", 0), "Thu  1 01");
    }
}
