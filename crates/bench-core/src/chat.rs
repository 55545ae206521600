//! Chat templates: the Llama 3 header format, and a model file's embedded Jinja template (e.g.
//! SmolLM2's ChatML) rendered with minijinja, with Python string methods from minijinja-contrib
//! because Hugging Face templates call them (`.strip()`, `.startswith()`).

use serde::Serialize;

use crate::tokenizer::Tokenizer;
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
                env.add_function("strftime_now", |_fmt: String| "26 Jul 2024".to_string());
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

/// Renders and tokenizes a conversation for generation. BOS is added exactly once: by the template
/// when it writes it, else by the tokenizer when the model expects one.
pub fn encode_chat(tokenizer: &Tokenizer, template: &ChatTemplate, messages: &[Message]) -> Result<Vec<u32>> {
    let bos = tokenizer.bos().and_then(|id| tokenizer.id_to_token(id)).unwrap_or_default();
    let eos = tokenizer.stop_tokens().first().and_then(|&id| tokenizer.id_to_token(id)).unwrap_or_default();
    let bos_for_template = if tokenizer.adds_bos() { bos.as_str() } else { "" };
    let text = template.render(messages, true, bos_for_template, &eos)?;
    let template_wrote_bos = !bos_for_template.is_empty() && text.starts_with(bos_for_template);
    tokenizer.encode(&text, tokenizer.adds_bos() && !template_wrote_bos)
}
