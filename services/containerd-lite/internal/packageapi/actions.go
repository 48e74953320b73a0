package packageapi

import (
	"context"
	"encoding/json"
	"fmt"

	"hearth.dev/internal/errdefs"
	"hearth.dev/internal/manifest"
	containerv1 "hearth.dev/proto/hearth/container/v1"
	hostv1 "hearth.dev/proto/hearth/host/v1"
	"hearth.dev/services/containerd-lite/internal/hostapi"
	"hearth.dev/services/containerd-lite/internal/packages"
)

// Actions are the package manager's actions, by container (packages.Manager).
type Actions interface {
	ContainerOf(id string) (string, error)
	ListActions(ctx context.Context, container string) ([]packages.ActionStatus, error)
	RunAction(ctx context.Context, container, action string, input []byte) (*manifest.ActionResult, error)
}

// actionsOf returns the package manager's actions and the package's container.
func (s *Service) actionsOf(id string) (Actions, string, error) {
	a, ok := s.p.(Actions)
	if !ok {
		return nil, "", fmt.Errorf("actions are not available on this host: %w", errdefs.ErrUnimplemented)
	}
	c, err := a.ContainerOf(id)
	return a, c, err
}

// ListActions implements PackageService.
func (s *Service) ListActions(ctx context.Context, req *containerv1.ListActionsRequest) (*containerv1.ListActionsResponse, error) {
	a, c, err := s.actionsOf(req.GetId())
	if err != nil {
		return nil, err
	}
	list, err := a.ListActions(ctx, c)
	if err != nil {
		return nil, err
	}
	return &containerv1.ListActionsResponse{Actions: ActionInfos(list)}, nil
}

// RunAction implements PackageService.
func (s *Service) RunAction(ctx context.Context, req *containerv1.RunActionRequest) (*containerv1.RunActionResponse, error) {
	a, c, err := s.actionsOf(req.GetId())
	if err != nil {
		return nil, err
	}
	res, err := a.RunAction(ctx, c, req.GetAction(), []byte(req.GetInputJson()))
	if err != nil {
		return nil, err
	}
	return &containerv1.RunActionResponse{Message: res.Message, Values: ActionValues(res)}, nil
}

// HostActions are the action effects a package's scripts call on its host.sock: the
// caller's own package's actions, by its container.
type HostActions struct{ A Actions }

var _ hostapi.ActionEffects = HostActions{}

// ListActions implements hostapi.ActionEffects.
func (h HostActions) ListActions(ctx context.Context, container string, _ *hostv1.ListActionsRequest) (*hostv1.ListActionsResponse, error) {
	list, err := h.A.ListActions(ctx, container)
	if err != nil {
		return nil, err
	}
	return &hostv1.ListActionsResponse{Actions: ActionInfos(list)}, nil
}

// RunAction implements hostapi.ActionEffects.
func (h HostActions) RunAction(ctx context.Context, container string, req *hostv1.RunActionRequest) (*hostv1.RunActionResponse, error) {
	res, err := h.A.RunAction(ctx, container, req.GetId(), []byte(req.GetInputJson()))
	if err != nil {
		return nil, err
	}
	return &hostv1.RunActionResponse{Message: res.Message, Values: ActionValues(res)}, nil
}

// ActionInfos converts actions for the API, each field with its type, bounds and default.
func ActionInfos(list []packages.ActionStatus) []*hostv1.ActionInfo {
	out := make([]*hostv1.ActionInfo, 0, len(list))
	for _, st := range list {
		a := st.Action
		info := &hostv1.ActionInfo{Id: st.ID, Name: a.Title(st.ID), Description: a.Description, When: a.Offered(), Available: st.Available, Reason: st.Reason}
		for _, n := range a.FieldNames() {
			f := a.Input[n]
			pf := &hostv1.ActionField{Name: n, Type: f.Type, Description: f.Description, Required: f.Required, Min: f.Min, Max: f.Max,
				Pattern: f.Pattern, Values: f.Values}
			if f.Default != nil {
				if d, err := json.Marshal(f.Default); err == nil {
					pf.DefaultJson = string(d)
				}
			}
			info.Input = append(info.Input, pf)
		}
		out = append(out, info)
	}
	return out
}

// ActionValues converts an action's values for the API.
func ActionValues(res *manifest.ActionResult) []*hostv1.ActionValue {
	out := make([]*hostv1.ActionValue, 0, len(res.Values))
	for _, v := range res.Values {
		out = append(out, &hostv1.ActionValue{Name: v.Name, Value: v.Value, Secret: v.Secret, Copyable: v.Copyable})
	}
	return out
}
