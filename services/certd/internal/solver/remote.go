package solver

import (
	"context"
	"fmt"
	"time"

	"hearth.dev/internal/dial"
	"hearth.dev/internal/errdefs"
	netv1 "hearth.dev/proto/hearth/net/v1"
)

// Remote presents challenges through netd's ChallengeService, at the edge where the CA
// connects (netd's ports 80 and 443).
type Remote struct {
	// Socket is netd's.
	Socket string
	// Type is the challenge the solver answers.
	Type netv1.ChallengeType
}

// Present implements Solver.
func (r Remote) Present(domain, token, keyAuth string) error {
	return r.call(func(ctx context.Context, cl netv1.ChallengeServiceClient) error {
		_, err := cl.PresentChallenge(ctx, &netv1.PresentChallengeRequest{Type: r.Type, Domain: domain, Token: token, KeyAuthorization: keyAuth})
		return err
	})
}

// CleanUp implements Solver.
func (r Remote) CleanUp(domain, token, _ string) error {
	return r.call(func(ctx context.Context, cl netv1.ChallengeServiceClient) error {
		_, err := cl.CleanUpChallenge(ctx, &netv1.CleanUpChallengeRequest{Type: r.Type, Domain: domain, Token: token})
		return err
	})
}

func (r Remote) call(f func(context.Context, netv1.ChallengeServiceClient) error) error {
	conn, err := dial.Unix(r.Socket)
	if err != nil {
		return fmt.Errorf("netd answers the challenges: %w: %w", err, errdefs.ErrUnavailable)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f(ctx, netv1.NewChallengeServiceClient(conn)); err != nil {
		return fmt.Errorf("netd: %w", errdefs.FromGRPC(err))
	}
	return nil
}
