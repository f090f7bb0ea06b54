// tools/attn/plot_cmd.cc — `attn plot`: curves of several runs' metrics.jsonl in one PNG (io::write_curves_png).
//
//   attn plot --out docs/lstm_vs_gru.png --tag valid/loss lstm=runs/lm-lstm/metrics.jsonl gru=runs/lm-gru
//
// Each --tag is one panel; each LABEL=PATH (a metrics.jsonl or a run directory holding one) is one
// series per panel. A resumed run repeats steps in its file: the last line of a step wins.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "attn/io/plot.h"
#include "commands.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::cli {
namespace {

struct PlotCli {
  std::string out = "curves.png";
  std::vector<std::string> tags = {"valid/loss"};
  std::vector<std::string> runs;
  std::string x_label = "step";
  int width = 560, height = 360;
};

// step -> value of `tag` in the metrics.jsonl at `path`; malformed lines are errors naming file and line.
std::map<int64_t, double> read_metric(const std::string& path, const std::string& tag) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("attn plot: cannot open " + path);
  std::map<int64_t, double> points;
  std::string line;
  for (int64_t number = 1; std::getline(f, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j = json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("step") || !j.at("step").is_number_integer())
      throw std::runtime_error("attn plot: " + path + ":" + std::to_string(number) +
                               ": not a metrics line (a JSON object with an integer \"step\")");
    auto v = j.find(tag);
    if (v != j.end() && v->is_number()) points[j.at("step").get<int64_t>()] = v->get<double>();
  }
  return points;
}

io::CurveSeries series_of(const std::string& run, const std::string& tag) {
  auto eq = run.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == run.size())
    throw std::invalid_argument("attn plot: expected LABEL=PATH, got \"" + run + "\"");
  std::string label = run.substr(0, eq), path = run.substr(eq + 1);
  if (fs::is_directory(path)) path = (fs::path(path) / "metrics.jsonl").string();
  io::CurveSeries s{.name = label, .x = {}, .y = {}};
  for (const auto& [step, v] : read_metric(path, tag)) s.x.push_back(double(step)), s.y.push_back(v);
  if (s.x.empty()) throw std::runtime_error("attn plot: " + path + " has no \"" + tag + "\"");
  return s;
}

}  // namespace

void add_plot_commands(CLI::App& app) {
  auto c = std::make_shared<PlotCli>();
  CLI::App* cmd = app.add_subcommand("plot", "draw a metric of several runs (metrics.jsonl) against steps as a PNG");
  cmd->add_option("runs", c->runs, "LABEL=PATH: a metrics.jsonl or a run directory holding one")->required();
  cmd->add_option("--out", c->out, "PNG to write")->capture_default_str();
  // One value per --tag, so that the LABEL=PATH positionals after it are not taken as tags.
  cmd->add_option("--tag", c->tags, "metric to draw; repeat for side-by-side panels")
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->capture_default_str();
  cmd->add_option("--x-label", c->x_label, "label of the x axis")->capture_default_str();
  cmd->add_option("--width", c->width, "pixels per panel")->capture_default_str();
  cmd->add_option("--height", c->height, "pixels")->capture_default_str();
  cmd->callback([c] {
    std::vector<io::CurvePanel> panels;
    for (const std::string& tag : c->tags) {
      io::CurvePanel p{.title = tag, .series = {}};
      for (const std::string& run : c->runs) p.series.push_back(series_of(run, tag));
      panels.push_back(std::move(p));
    }
    io::write_curves_png(c->out, panels, {.x_label = c->x_label, .panel_width = c->width, .panel_height = c->height});
    std::cout << c->out << std::endl;
  });
}

}  // namespace attn::cli
