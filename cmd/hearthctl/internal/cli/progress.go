package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	containerv1 "hearth.dev/proto/hearth/container/v1"
)

// progressView shows image progress: a bar redrawn in place on a terminal, plain lines
// (one per phase and per finished layer) otherwise, nothing with --output json.
type progressView struct {
	w      io.Writer
	tty    bool
	quiet  bool
	last   string
	drawn  bool
	layers int32
	at     time.Time // of the last throttled update
}

func newProgressView(g *globals) *progressView {
	tty := false
	if f, ok := g.stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progressView{w: g.stderr, tty: tty, quiet: g.output == "json"}
}

func (v *progressView) update(p *containerv1.ImageProgress) {
	if v.quiet || p == nil {
		return
	}
	if !v.tty {
		line := p.GetPhase()
		if p.GetLayersTotal() > 0 {
			line = fmt.Sprintf("%s: layer %d/%d, %s", p.GetPhase(), p.GetLayersDone(), p.GetLayersTotal(), size(p.GetBytesDone(), p.GetBytesTotal()))
		}
		if p.GetPhase() != v.last || p.GetLayersDone() != v.layers {
			fmt.Fprintln(v.w, line)
		}
		v.last, v.layers = p.GetPhase(), p.GetLayersDone()
		return
	}
	const width = 30
	frac := 0.0
	switch {
	case p.GetBytesTotal() > 0:
		frac = float64(p.GetBytesDone()) / float64(p.GetBytesTotal())
	case p.GetLayersTotal() > 0:
		frac = float64(p.GetLayersDone()) / float64(p.GetLayersTotal())
	}
	frac = min(max(frac, 0), 1)
	n := int(frac * width)
	bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	if n > 0 && n < width {
		bar = bar[:n-1] + ">" + bar[n:]
	}
	fmt.Fprintf(v.w, "\r\033[K%-10s [%s] %3.0f%%  layer %d/%d  %s", p.GetPhase(), bar, frac*100, p.GetLayersDone(), p.GetLayersTotal(), size(p.GetBytesDone(), p.GetBytesTotal()))
	v.drawn = true
}

// throttled is update at most ten times a second (for counts that change on every read).
func (v *progressView) throttled(p *containerv1.ImageProgress) {
	if now := time.Now(); now.Sub(v.at) >= 100*time.Millisecond || p.GetBytesDone() == p.GetBytesTotal() {
		v.at = now
		v.update(p)
	}
}

// done ends the bar's line.
func (v *progressView) done() {
	if v.drawn {
		fmt.Fprintln(v.w)
		v.drawn = false
	}
}

func size(done, total int64) string {
	if total > 0 {
		return fmt.Sprintf("%s / %s", human(done), human(total))
	}
	return human(done)
}

func human(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
