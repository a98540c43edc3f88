//! A chat window: the model runs on the window's own wgpu device (egui's renderer creates it with
//! the features and limits the kernels want; `Gpu::from_wgpu` adopts it), tokens stream in from a
//! worker thread, and the UI thread never waits for the GPU.
//!
//!     cargo run --release --example chat [-- --model DIR]
//!
//! Self-test (CI runs it under xvfb-run): generate greedily, render, save the window as PNG, print
//! the generated ids as one JSON line and exit:
//!
//!     cargo run --release --example chat -- --model models/xlstm-large-mini \
//!         --prompt "It is a truth" --exit-after-tokens 24 --screenshot out.png

use clap::Parser;
use eframe::{egui, egui_wgpu};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;
use xlstm_wgpu::{Error, Gpu, LoadOptions, Model, Result, Sampler, SamplerConfig, Session, SessionOptions};

#[derive(Parser)]
#[command(name = "chat", about = "Generate text with an xLSTM model in a window")]
struct Args {
    /// Model directory (config.json, safetensors, tokenizer.json), or Hugging Face Hub id
    /// ORG/NAME[@REVISION] (from the Hugging Face cache, downloaded into it when absent).
    #[arg(long, default_value = "models/xlstm-large-mini")]
    model: String,
    /// Prompt to start with.
    #[arg(long, default_value = "")]
    prompt: String,
    /// Self-test: generate this many tokens greedily at start, then save the window and exit.
    #[arg(long)]
    exit_after_tokens: Option<usize>,
    /// Self-test: where to write the PNG of the window.
    #[arg(long, default_value = "chat.png")]
    screenshot: String,
}

/// What the worker threads send to the UI.
enum Msg {
    Loaded(Result<Model>),
    Token(u32, String),
    Done(Result<()>),
}

struct Chat {
    gpu: Option<Arc<Gpu>>,
    model: Option<Model>,
    model_dir: String,
    prompt: String,
    output: String,
    ids: Vec<u32>,
    sampling: SamplerConfig,
    error: Option<String>,
    busy: bool,
    stop: Arc<AtomicBool>,
    /// When the first and the latest token arrived: tok/s over the decode, not the prefill.
    first_token: Option<Instant>,
    last_token: Instant,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    /// The last generation has finished.
    done: bool,
    self_test: Option<SelfTest>,
}

/// The self-test mode (`--exit-after-tokens`): generate greedily at start; once the text (or an
/// error) is on screen, save the window as PNG, print the ids and close.
struct SelfTest {
    tokens: usize,
    screenshot: String,
    shot: Arc<Mutex<Option<Arc<egui::ColorImage>>>>,
    requested: bool,
    outcome: Arc<Mutex<Option<std::result::Result<(), String>>>>,
}

impl SelfTest {
    fn after_frame(&mut self, ctx: &egui::Context, finished: bool, error: Option<&String>, ids: &[u32]) {
        if finished && !self.requested {
            self.requested = true;
            let (shot, repaint) = (self.shot.clone(), ctx.clone());
            // Taken after the frame being built now, which already shows the finished text.
            ctx.request_screenshot(move |image| {
                *shot.lock().unwrap_or_else(|p| p.into_inner()) = Some(image);
                repaint.request_repaint();
            });
        }
        let Some(image) = self.shot.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let mut outcome = save_png(&self.screenshot, &image).map_err(|e| format!("{}: {e}", self.screenshot));
        if let Some(e) = error {
            outcome = Err(e.clone());
        } else if outcome.is_ok() {
            println!("{}", serde_json::json!({ "ids": ids }));
        }
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }
}

impl Chat {
    /// Loads the model on a worker: reading weights and compiling pipelines takes seconds.
    fn load(&mut self, ctx: &egui::Context) {
        let Some(gpu) = self.gpu.clone() else { return };
        let (tx, ctx, dir) = (self.tx.clone(), ctx.clone(), self.model_dir.clone());
        self.model = None;
        self.busy = true;
        std::thread::spawn(move || {
            let model = xlstm_wgpu::hub::resolve_model(std::path::Path::new(&dir))
                .and_then(|dir| Model::load(gpu, &dir, &LoadOptions::default()));
            let _ = tx.send(Msg::Loaded(model));
            ctx.request_repaint();
        });
    }

    /// Generates on a worker thread that owns the session; tokens come back over the channel.
    fn generate(&mut self, ctx: &egui::Context, max_new: usize) {
        let Some(model) = self.model.clone() else { return };
        let (tx, ctx, prompt, cfg) = (self.tx.clone(), ctx.clone(), self.prompt.clone(), self.sampling.clone());
        let stop = self.stop.clone();
        stop.store(false, Ordering::Relaxed);
        (self.busy, self.done, self.error, self.first_token) = (true, false, None, None);
        self.ids.clear();
        std::thread::spawn(move || {
            let run = || -> Result<()> {
                let tok = model
                    .tokenizer()
                    .ok_or_else(|| Error::Input("the model has no tokenizer.json".into()))?;
                let mut ids = vec![model.bos_token_id().unwrap_or(0)];
                ids.extend(tok.encode(&prompt)?);
                let mut session = Session::new(&model, SessionOptions::default())?;
                // Checked before every prefill segment and decode batch: Stop takes effect there.
                let flag = stop.clone();
                session.set_stop_hook(Some(Arc::new(move || match flag.load(Ordering::Relaxed) {
                    true => Err(Error::Stopped("stopped from the window".into())),
                    false => Ok(()),
                })));
                let mut sampler = Sampler::new(cfg)?;
                let eos: Vec<u32> = model.eos_token_id().into_iter().collect();
                session.generate(&ids, max_new, &mut sampler, &eos, &mut |id| {
                    let _ = tx.send(Msg::Token(id, tok.decode(&[id])?));
                    ctx.request_repaint();
                    Ok(!stop.load(Ordering::Relaxed))
                })?;
                Ok(())
            };
            let result = match run() {
                Err(Error::Stopped(_)) => Ok(()),
                r => r,
            };
            let _ = tx.send(Msg::Done(result));
            ctx.request_repaint();
        });
    }

    fn receive(&mut self, ctx: &egui::Context) {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Loaded(Ok(model)) => {
                    (self.model, self.busy) = (Some(model), false);
                    if let Some(n) = self.self_test.as_ref().map(|t| t.tokens) {
                        self.sampling = SamplerConfig::default();
                        self.generate(ctx, n);
                    }
                }
                Msg::Token(id, text) => {
                    self.last_token = Instant::now();
                    self.first_token.get_or_insert(self.last_token);
                    self.ids.push(id);
                    self.output.push_str(&text);
                }
                Msg::Done(result) => {
                    self.busy = false;
                    if let Err(e) = result {
                        self.error = Some(e.to_string());
                    }
                    self.done = true;
                }
                Msg::Loaded(Err(e)) => (self.busy, self.error) = (false, Some(format!("loading the model: {e}"))),
            }
        }
        let finished = self.done || self.error.is_some();
        if let Some(test) = &mut self.self_test {
            test.after_frame(ctx, finished, self.error.as_ref(), &self.ids);
        }
    }
}

impl eframe::App for Chat {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.receive(&ctx);
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label("Model");
                ui.text_edit_singleline(&mut self.model_dir);
                if ui.add_enabled(!self.busy, egui::Button::new("Load")).clicked() {
                    self.load(&ctx);
                }
            });
            ui.horizontal(|ui| {
                ui.add(egui::Slider::new(&mut self.sampling.temperature, 0.0..=2.0).text("temperature"));
                ui.add(egui::Slider::new(&mut self.sampling.top_k, 0..=200).text("top-k"));
                ui.add(egui::Slider::new(&mut self.sampling.top_p, 0.05..=1.0).text("top-p"));
            });
            ui.add(
                egui::TextEdit::multiline(&mut self.prompt)
                    .hint_text("Prompt")
                    .desired_rows(3),
            );
            ui.horizontal(|ui| {
                let ready = self.model.is_some() && !self.busy;
                if ui.add_enabled(ready, egui::Button::new("Generate")).clicked() {
                    self.output = self.prompt.clone();
                    self.generate(&ctx, 256);
                    // A new draw next time (the seed makes each sampled run reproducible).
                    self.sampling.seed = self.sampling.seed.wrapping_add(1);
                }
                if ui.add_enabled(self.busy, egui::Button::new("Stop")).clicked() {
                    self.stop.store(true, Ordering::Relaxed);
                }
                if ui.add_enabled(!self.busy, egui::Button::new("Clear")).clicked() {
                    (self.output, self.error) = (String::new(), None);
                    self.ids.clear();
                }
                let rate = match self.first_token {
                    Some(first) if self.ids.len() > 1 => {
                        (self.ids.len() - 1) as f64 / (self.last_token - first).as_secs_f64().max(1e-3)
                    }
                    _ => 0.0,
                };
                let pool = self.model.as_ref().map(|m| m.pool_stats()).unwrap_or_default();
                ui.label(format!(
                    "{} tokens  {rate:.1} tok/s  GPU pool {:.1} MiB (peak {:.1})",
                    self.ids.len(),
                    pool.live_total() as f64 / (1 << 20) as f64,
                    pool.peak as f64 / (1 << 20) as f64
                ));
                if self.busy {
                    ui.spinner();
                }
            });
            if let Some(e) = &self.error {
                ui.colored_label(egui::Color32::LIGHT_RED, e);
            }
            ui.separator();
            egui::ScrollArea::vertical().stick_to_bottom(true).show(ui, |ui| {
                ui.add(egui::Label::new(egui::RichText::new(&self.output).monospace()).wrap());
            });
        });
    }
}

fn save_png(path: &str, image: &egui::ColorImage) -> std::io::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, image.size[0] as u32, image.size[1] as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let rgba: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_srgba_unmultiplied()).collect();
    enc.write_header()?.write_image_data(&rgba)?;
    Ok(())
}

/// Asks egui's renderer for a device with what the kernels want (on top of egui's own needs).
fn wgpu_options() -> egui_wgpu::WgpuConfiguration {
    let mut options = egui_wgpu::WgpuConfiguration::default();
    if let egui_wgpu::WgpuSetup::CreateNew(setup) = &mut options.wgpu_setup {
        setup.device_descriptor = Arc::new(|adapter| {
            let features = Gpu::recommended_features(adapter);
            let mut limits = Gpu::recommended_limits(adapter);
            // egui's own need: textures as large as a 4k+ window, where the adapter allows.
            let texture = adapter.limits().max_texture_dimension_2d.min(8192);
            limits.max_texture_dimension_2d = limits.max_texture_dimension_2d.max(texture);
            let experimental = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
                // SAFETY: the crate validates its cooperative-matrix kernels against the
                // adapter's configurations; the token only opts in to the experimental API.
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            };
            wgpu::DeviceDescriptor {
                label: Some("chat"),
                required_features: features,
                required_limits: limits,
                experimental_features: experimental,
                ..Default::default()
            }
        });
    }
    options
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = Arc::new(Mutex::new(None));
    let app_outcome = outcome.clone();
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Wgpu,
        wgpu_options: wgpu_options(),
        viewport: egui::ViewportBuilder::default().with_inner_size([800.0, 560.0]),
        ..Default::default()
    };
    let run = eframe::run_native(
        "xlstm chat",
        options,
        Box::new(move |cc| {
            let (tx, rx) = mpsc::channel();
            // The window's device, shared with the model.
            let gpu = cc
                .wgpu_render_state
                .as_ref()
                .ok_or_else(|| Error::Adapter("eframe started without its wgpu renderer".into()))
                .and_then(|rs| Gpu::from_wgpu(&rs.adapter, rs.device.clone(), rs.queue.clone()));
            let (gpu, error) = match gpu {
                Ok(gpu) => (Some(Arc::new(gpu)), None),
                Err(e) => (None, Some(e.to_string())),
            };
            let mut app = Chat {
                gpu,
                model: None,
                model_dir: args.model,
                prompt: args.prompt,
                output: String::new(),
                ids: Vec::new(),
                sampling: SamplerConfig::default(),
                error,
                busy: false,
                stop: Arc::new(AtomicBool::new(false)),
                first_token: None,
                last_token: Instant::now(),
                tx,
                rx,
                done: false,
                self_test: args.exit_after_tokens.map(|tokens| SelfTest {
                    tokens,
                    screenshot: args.screenshot,
                    shot: Arc::new(Mutex::new(None)),
                    requested: false,
                    outcome: app_outcome,
                }),
            };
            app.output = app.prompt.clone();
            app.load(&cc.egui_ctx);
            Ok(Box::new(app))
        }),
    );
    if let Err(e) = run {
        eprintln!("chat: {e}");
        return ExitCode::FAILURE;
    }
    let outcome = outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
    match outcome {
        Some(Err(e)) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}
