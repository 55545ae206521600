//! The request bodies of OpenAI's chat and text completion endpoints, as far as this server
//! reads them (unknown fields are ignored), and their checks. Field meanings follow OpenAI's API
//! reference; `top_k` and `ignore_eos` are the extensions llama.cpp's and vLLM's servers take.

use serde::Deserialize;

use crate::error::ApiError;

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StopSpec {
    /// One stop string.
    One(String),
    /// Several (OpenAI allows up to 4; more are accepted).
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the token counts.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The sampling and stopping fields both endpoints share.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GenParams {
    /// The model's id (`GET /v1/models`); absent means the one served.
    pub model: Option<String>,
    /// Most tokens to generate (older name).
    pub max_tokens: Option<u64>,
    /// Most tokens to generate (newer name; wins over `max_tokens`).
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature (default 1, as OpenAI's); 0 = greedy.
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Sample among the k most likely tokens (0 or absent: all).
    pub top_k: Option<u64>,
    /// Seed of the request's sampler (absent: a fresh one per request).
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Option<StopSpec>,
    /// Server-sent events, one token per chunk.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Keep generating past end-of-sequence tokens.
    pub ignore_eos: Option<bool>,
    /// Choices per request: only 1 is served.
    pub n: Option<u64>,
}

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions.
    System,
    /// Newer name for `system`.
    Developer,
    /// The user.
    User,
    /// The model's earlier answers.
    Assistant,
}

/// One part of a message given as a list of parts.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// Only `text` parts are read.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    pub text: Option<String>,
}

/// A message's content: a string or a list of parts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Parts; the text parts are joined.
    Parts(Vec<ContentPart>),
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: ChatRole,
    /// What it says (absent or null: empty).
    pub content: Option<MessageContent>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Sampling and stopping.
    #[serde(flatten)]
    pub params: GenParams,
}

/// A text completion's prompt.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptSpec {
    /// Text.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
    /// A list of texts: only one is served per request.
    Texts(Vec<String>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// What to continue.
    pub prompt: PromptSpec,
    /// Sampling and stopping.
    #[serde(flatten)]
    pub params: GenParams,
}

impl ChatMessage {
    /// The message in bench-core's terms.
    pub fn to_message(&self, index: usize) -> Result<bench_core::text::chat::Message, ApiError> {
        use bench_core::text::chat::{Message, Role};
        let role = match self.role {
            ChatRole::System | ChatRole::Developer => Role::System,
            ChatRole::User => Role::User,
            ChatRole::Assistant => Role::Assistant,
        };
        let text = match &self.content {
            None => String::new(),
            Some(MessageContent::Text(t)) => t.clone(),
            Some(MessageContent::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::bad_request(
                                format!("messages[{index}].content: part of type '{kind}' is not supported (this server reads text parts only)"),
                                Some("messages"),
                            ))
                        }
                    }
                }
                text
            }
        };
        Ok(Message::new(role, text))
    }
}

impl PromptSpec {
    /// The one prompt of the request.
    pub fn single(&self) -> Result<Prompt<'_>, ApiError> {
        match self {
            PromptSpec::Text(t) => Ok(Prompt::Text(t)),
            PromptSpec::Tokens(ids) => Ok(Prompt::Tokens(ids)),
            PromptSpec::Texts(v) if v.len() == 1 => Ok(Prompt::Text(&v[0])),
            PromptSpec::Texts(v) => Err(ApiError::bad_request(
                format!("prompt: a list of {} prompts was sent; this server answers one prompt per request", v.len()),
                Some("prompt"),
            )),
        }
    }
}

/// One prompt, as text or token ids.
pub enum Prompt<'a> {
    /// Text, tokenized by the model's tokenizer.
    Text(&'a str),
    /// Token ids, used as they are.
    Tokens(&'a [u32]),
}

impl GenParams {
    /// `stop` as a list.
    pub fn stop_strings(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(StopSpec::One(s)) => vec![s.clone()],
            Some(StopSpec::Many(v)) => v.clone(),
        }
    }

    /// Whether the answer streams.
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a usage chunk ends the stream.
    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false)
    }

    /// The checks that need no model: value ranges and unsupported options.
    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::bad_request(format!("n = {n}: this server makes one choice per request; send n = 1 or leave it out"), Some("n")));
            }
        }
        if let Some(t) = self.temperature {
            if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
                return Err(ApiError::bad_request(format!("temperature = {t}: accepted 0 (greedy) to 2"), Some("temperature")));
            }
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ApiError::bad_request(format!("top_p = {p}: accepted values are in (0, 1]"), Some("top_p")));
            }
        }
        if let Some(0) = self.max_completion_tokens.or(self.max_tokens) {
            return Err(ApiError::bad_request("max_tokens = 0: ask for at least 1 token", Some("max_tokens")));
        }
        Ok(())
    }
}
