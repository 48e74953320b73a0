package leaf

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkLocalLeafIssue measures issuing a new local leaf end to end: the name checks,
// a P-256 key, the signature and the atomic writes of key, chain and record.
func BenchmarkLocalLeafIssue(b *testing.B) {
	f := newFixture(b)
	m := f.manager(b, 7*24*time.Hour, nil)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Issue(ctx, req(b, Local, "", fmt.Sprintf("host%d.local", i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "leaves/s")
}
