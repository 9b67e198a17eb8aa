package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/policy"
	"github.com/isolator-dev/isolator/internal/status"
)

// syncResult is what syncPolicies did and found.
type syncResult struct {
	// owned are the policies of the WorkloadIsolation in the cluster after
	// the sync, as written or as read.
	owned []networkingv1.NetworkPolicy
	// deleted are the names of the policies this sync deleted.
	deleted []string
	// failure, when not nil, says why the desired policies are not all in
	// place (a name conflict, an invalid object, a repair that did not
	// converge).
	failure *status.Failure
}

// syncPolicies makes the cluster hold exactly the desired policies of wi,
// given the policies of its namespace (existing, the cache's own objects:
// read, never modified),
// touching only the policies wi owns (policy.Owned): it creates the missing
// ones, repairs the owned ones that differ, and deletes the owned ones no
// longer desired. Up-to-date policies cause no request at all. Names taken by
// objects wi does not own, or contested by another WorkloadIsolation
// (contested), are reported and left alone.
func (r *WorkloadIsolationReconciler) syncPolicies(ctx context.Context, wi *isolationv1alpha1.WorkloadIsolation,
	desired, existing []networkingv1.NetworkPolicy, contested []policy.Conflict) (syncResult, error) {
	plan := policy.PlanSync(wi, desired, existing, contested)
	var res syncResult
	for _, np := range plan.Keep {
		res.owned = append(res.owned, *np)
	}
	if len(plan.Conflicts) > 0 {
		res.failure = conflictFailure(plan.Conflicts)
	}

	var errs []error
	owner := wi
	note := func(name, haveVersion, writer string, now time.Time) {
		if !r.changedByOthers(owner, name, haveVersion) {
			return // a change of the spec, not a repair
		}
		if contested := r.recordRepair(owner, name, writer, now); contested != nil && res.failure == nil {
			res.failure = contested
		}
	}
	for _, want := range plan.Create {
		now := time.Now()
		created, err := r.create(ctx, want)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		res.owned = append(res.owned, *created)
		note(want.Name, "", "", now)
		r.wrote(owner, want.Name, created.ResourceVersion)
	}
	for _, u := range plan.Update {
		now := time.Now()
		writer := ""
		if r.APIReader != nil && r.changedByOthers(owner, u.Have.Name, u.Have.ResourceVersion) && r.nearContest(owner, u.Have.Name, now) {
			live := &networkingv1.NetworkPolicy{}
			if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(u.Have), live); err == nil {
				writer = lastWriter(live)
			}
		}
		repaired, err := r.apply(ctx, u.Want, u.Have)
		if err != nil {
			if apierrors.IsConflict(err) {
				// The policy changed again between our read and our
				// repair: someone else keeps writing it.
				note(u.Have.Name, u.Have.ResourceVersion, writer, now)
			}
			errs = append(errs, err)
			res.owned = append(res.owned, *u.Have)
			continue
		}
		res.owned = append(res.owned, *repaired)
		note(u.Have.Name, u.Have.ResourceVersion, writer, now)
		r.wrote(owner, u.Have.Name, repaired.ResourceVersion)
		if !policy.UpToDate(repaired, u.Want) {
			// Someone else's write won between our read and our apply, or
			// an admission plugin changes the object: do not write again at
			// once, back off and say so.
			errs = append(errs, fmt.Errorf("NetworkPolicy %s still differs from the spec after repair", u.Want.Name))
			res.failure = &status.Failure{Reason: isolationv1alpha1.ReasonNotConverged,
				Message: fmt.Sprintf("NetworkPolicy %s still differs from the spec after it was repaired; retrying with back-off", u.Want.Name)}
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Never prune while the desired set is not fully in place.
		return res, r.classify(errs, &res)
	}
	for _, stale := range plan.Prune {
		if err := r.Delete(ctx, stale, client.Preconditions{UID: &stale.UID, ResourceVersion: &stale.ResourceVersion}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting NetworkPolicy %s: %w", stale.Name, err))
			res.owned = append(res.owned, *stale)
			continue
		}
		res.deleted = append(res.deleted, stale.Name)
		r.wrote(owner, stale.Name, "")
		log.FromContext(ctx).Info("deleted NetworkPolicy no longer wanted", "networkPolicy", stale.Name)
	}
	names := map[string]bool{}
	for _, np := range desired {
		names[np.Name] = true
	}
	for _, np := range res.owned {
		names[np.Name] = true
	}
	r.keepOnly(owner, names)
	return res, errors.Join(errs...)
}

// classify turns a write error into the sync's failure: the API server
// rejecting a generated object as invalid (422) is a spec problem that a
// retry cannot fix. Anything else, a name taken between our read and our
// create included (reported as a conflict once the cache holds the object),
// is transient and returned.
func (r *WorkloadIsolationReconciler) classify(errs []error, res *syncResult) error {
	var invalid, other []error
	for _, err := range errs {
		if apierrors.IsInvalid(err) {
			invalid = append(invalid, err)
		} else {
			other = append(other, err)
		}
	}
	if len(invalid) > 0 {
		res.failure = &status.Failure{Reason: isolationv1alpha1.ReasonInvalidSpec, Stalled: true,
			Message: "the API server rejected a generated NetworkPolicy: " + errors.Join(invalid...).Error()}
	}
	return errors.Join(other...)
}

func conflictFailure(conflicts []policy.Conflict) *status.Failure {
	names := make([]string, 0, len(conflicts))
	for _, c := range conflicts {
		names = append(names, c.String())
	}
	return &status.Failure{
		Reason:  isolationv1alpha1.ReasonNameConflict,
		Stalled: true,
		Message: "generated names are taken: " + status.JoinBounded(names, 8) +
			"; those objects are left untouched and no policy that could widen access was written." +
			" Rename this WorkloadIsolation or its rules, or remove the other object",
	}
}

// create creates a policy that does not exist yet. Unlike an apply, a create
// fails when an object of that name appeared in the meantime, so the operator
// never takes over an object it did not create.
func (r *WorkloadIsolationReconciler) create(ctx context.Context, want *networkingv1.NetworkPolicy) (*networkingv1.NetworkPolicy, error) {
	obj := want.DeepCopy()
	if err := r.Create(ctx, obj, client.FieldOwner(FieldOwner)); err != nil {
		return nil, fmt.Errorf("creating NetworkPolicy %s: %w", want.Name, err)
	}
	log.FromContext(ctx).Info("created NetworkPolicy", "networkPolicy", want.Name)
	return obj, nil
}

// apply repairs an owned policy with a forced server-side apply that names
// the whole spec, on the precondition that the policy is still the one read
// (have's resourceVersion): a policy replaced by someone else in between is
// not taken over.
func (r *WorkloadIsolationReconciler) apply(ctx context.Context, want, have *networkingv1.NetworkPolicy) (*networkingv1.NetworkPolicy, error) {
	u, err := policy.ApplyObject(want, have)
	if err != nil {
		return nil, err
	}
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("applying NetworkPolicy %s: %w", want.Name, err)
	}
	out := &networkingv1.NetworkPolicy{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		return nil, fmt.Errorf("reading applied NetworkPolicy %s: %w", want.Name, err)
	}
	log.FromContext(ctx).Info("repaired NetworkPolicy", "networkPolicy", want.Name)
	return out, nil
}

// ownedReferences lists the owned policies in the order of desired, then
// any other owned ones (not yet pruned) by name.
func ownedReferences(desired, owned []networkingv1.NetworkPolicy) []isolationv1alpha1.PolicyReference {
	present := map[string]bool{}
	for _, np := range owned {
		present[np.Name] = true
	}
	refs := []isolationv1alpha1.PolicyReference{}
	for _, np := range desired {
		if present[np.Name] {
			refs = append(refs, isolationv1alpha1.PolicyReference{Kind: "NetworkPolicy", Name: np.Name})
			delete(present, np.Name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(present)) {
		refs = append(refs, isolationv1alpha1.PolicyReference{Kind: "NetworkPolicy", Name: name})
	}
	return refs
}
