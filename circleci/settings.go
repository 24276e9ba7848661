package circleci

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Complete fills in cfg's Token and Host the way the CircleCI CLI finds
// them, so that a machine set up for one works with the other: what cfg
// has already (the command line's flags) wins, then the environment
// ($CIRCLE_TOKEN, $CIRCLECI_TOKEN, $CIRCLECI_CLI_TOKEN; $CIRCLECI_HOST,
// $CIRCLECI_CLI_HOST), then the CLI's config file ~/.circleci/cli.yml,
// then DefaultHost. A host given with the API's path (/api/v2 or /api/v1.1,
// copied from the API docs) loses it: New adds it to every request.
// getenv reads the environment (os.Getenv).
func (cfg *Config) Complete(getenv func(string) string) {
	for _, k := range []string{"CIRCLE_TOKEN", "CIRCLECI_TOKEN", "CIRCLECI_CLI_TOKEN"} {
		if cfg.Token == "" {
			cfg.Token = getenv(k)
		}
	}
	for _, k := range []string{"CIRCLECI_HOST", "CIRCLECI_CLI_HOST"} {
		if cfg.Host == "" {
			cfg.Host = getenv(k)
		}
	}
	if (cfg.Token == "" || cfg.Host == "") && getenv("HOME") != "" {
		cfg.fromCLIConfig(filepath.Join(getenv("HOME"), ".circleci", "cli.yml"))
	}
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	host := strings.TrimRight(cfg.Host, "/")
	cfg.Host = strings.TrimSuffix(strings.TrimSuffix(host, "/api/v2"), "/api/v1.1")
}

// cliConfig is what the CircleCI CLI's config file holds that the client
// uses; the file has more settings (rest_endpoint, tls_cert, ...), which
// are left alone.
type cliConfig struct {
	Host  string `yaml:"host"`
	Token string `yaml:"token"`
}

// fromCLIConfig fills in the token and host cfg lacks from the CircleCI
// CLI's config file at path. A missing file is no matter; one that is not
// the YAML the CLI writes is said once and passed over.
func (cfg *Config) fromCLIConfig(path string) {
	log := cfg.logger()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var c cliConfig
	if err == nil {
		err = yaml.Unmarshal(data, &c)
	}
	if err != nil {
		log.Warn("passing over the CircleCI CLI's config: it cannot be read as YAML; fix or remove it", "file", path, "error", err)
		return
	}
	if cfg.Token == "" && c.Token != "" {
		cfg.Token = c.Token
		log.Debug("using the token from the CircleCI CLI's config", "file", path)
	}
	if cfg.Host == "" && c.Host != "" {
		cfg.Host = c.Host
		log.Debug("using the host from the CircleCI CLI's config", "file", path, "host", c.Host)
	}
}

// logger is cfg's Logger, or one that discards.
func (cfg *Config) logger() *slog.Logger {
	if cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return cfg.Logger
}
