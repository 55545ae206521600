//! The interactive chat (streaming Q&A with history), or one question per line from a pipe.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};

use bench_backend::backend::LanguageModel;
use bench_core::run::sampling::{Sampler, SamplingConfig};
use bench_core::text::chat::{encode_chat_within, ChatTemplate, Message, Role};
use bench_core::text::tokenizer::Tokenizer;

use crate::line_input::{read_line_capped, InputLine, MAX_LINE_BYTES};
use crate::mode::generate::answer;
use crate::Cli;

/// Interactive Q&A with history; with stdin not a terminal, one question per line. A line that
/// cannot be asked (not UTF-8, too long, longer than the context) gets a one-line error on
/// stderr and the chat goes on; end of input ends it.
pub(crate) fn chat(cli: &Cli, model: &mut dyn LanguageModel, tokenizer: &Tokenizer, template: &ChatTemplate, sampling: SamplingConfig) -> Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let context = model.info().max_seq_len;
    let mut sampler = Sampler::new(sampling);
    let mut history: Vec<Message> = Vec::new();
    if interactive {
        eprintln!("Chat with the model ({} template). /exit or Ctrl-D to quit, /reset to forget the conversation.", template.name());
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line_no = 0usize;
    loop {
        if interactive {
            eprint!("\n> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = read_line_capped(&mut input, MAX_LINE_BYTES).context("reading stdin")? else { break };
        line_no += 1;
        let line = match line {
            InputLine::Text(s) => s,
            InputLine::InvalidUtf8 { offset } => {
                eprintln!("error: input line {line_no} is not valid UTF-8 (bad byte at offset {offset}); it was skipped, ask again");
                continue;
            }
            InputLine::TooLong { bytes } => {
                eprintln!("error: input line {line_no} is {bytes} bytes (accepted: up to {MAX_LINE_BYTES}); it was skipped, ask a shorter question");
                continue;
            }
        };
        let question = line.trim();
        if question.is_empty() {
            continue;
        }
        match question {
            "/exit" | "/quit" => break,
            "/reset" => {
                history.clear();
                continue;
            }
            _ => {}
        }
        history.push(Message::new(Role::User, question));
        let ids = encode_chat_within(tokenizer, template, &mut history, cli.sampling.max_tokens, context)?;
        if ids.len() >= context {
            history.pop();
            eprintln!(
                "error: input line {line_no} is {} tokens with the chat template, but the context holds {context} (accepted: under {context} tokens); ask a shorter question or raise --max-seq-len",
                ids.len()
            );
            continue;
        }
        let out = answer(cli, model, tokenizer, &ids, &mut sampler)?;
        if cli.output.json {
            println!("{}", serde_json::json!({"question": question, "answer": out.text, "generated_ids": out.generated_ids}));
        }
        history.push(Message::new(Role::Assistant, out.text.trim().to_string()));
    }
    Ok(())
}
