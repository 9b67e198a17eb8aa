package policy_test

import (
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
	"github.com/isolator-dev/isolator/internal/policy"
)

func names(nps []*networkingv1.NetworkPolicy) []string {
	var out []string
	for _, np := range nps {
		out = append(out, np.Name)
	}
	return out
}

func TestOwned(t *testing.T) {
	wi := isolation("platform", isolationv1alpha1.IngressRule{Name: "nginx"})
	desired, err := policy.Build(wi, localAI, catalog(t))
	if err != nil {
		t.Fatal(err)
	}
	ours := desired[0]
	tests := []struct {
		name   string
		change func(*networkingv1.NetworkPolicy)
		want   bool
	}{
		{"generated and controlled", func(*networkingv1.NetworkPolicy) {}, true},
		{"same name, written by someone else", func(np *networkingv1.NetworkPolicy) {
			np.OwnerReferences, np.Labels = nil, nil
		}, false},
		{"generated labels copied, no owner reference", func(np *networkingv1.NetworkPolicy) { np.OwnerReferences = nil }, false},
		{"owner reference to a WorkloadIsolation of the same name but another UID", func(np *networkingv1.NetworkPolicy) {
			np.OwnerReferences[0].UID = "uid-of-an-earlier-one"
		}, false},
		{"non-controller owner reference", func(np *networkingv1.NetworkPolicy) {
			np.OwnerReferences[0].Controller = ptr.To(false)
		}, false},
		{"controlled, but the owner label names another resource", func(np *networkingv1.NetworkPolicy) {
			np.Labels[policy.LabelOwner] = "other"
		}, false},
		{"controlled, generated labels removed (repaired, not abandoned)", func(np *networkingv1.NetworkPolicy) {
			np.Labels = nil
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			np := ours.DeepCopy()
			tt.change(np)
			if got := policy.Owned(np, wi); got != tt.want {
				t.Errorf("Owned = %v, want %v", got, tt.want)
			}
		})
	}
}

// An administrator's policy that happens to carry a generated name.
func foreign(name string) networkingv1.NetworkPolicy {
	return networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "local-ai", ResourceVersion: "7"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
}

func TestPlanSync(t *testing.T) {
	wi := isolation("platform", isolationv1alpha1.IngressRule{Name: "nginx"}, isolationv1alpha1.IngressRule{Name: "metrics"})
	desired, err := policy.Build(wi, localAI, catalog(t))
	if err != nil {
		t.Fatal(err)
	}
	deny, nginx, metrics := desired[0], desired[1], desired[2]
	drifted := func(np networkingv1.NetworkPolicy) networkingv1.NetworkPolicy {
		out := *np.DeepCopy()
		out.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
		return out
	}
	stale := *nginx.DeepCopy()
	stale.Name = policy.AllowName(wi.Name, "old")
	moved := drifted(deny)
	moved.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "elsewhere"}}

	tests := []struct {
		name                             string
		existing                         []networkingv1.NetworkPolicy
		contested                        []policy.Conflict
		create, update, prune, conflicts []string
	}{
		{name: "nothing there: create all", create: []string{deny.Name, nginx.Name, metrics.Name}},
		{name: "all in place: no write", existing: desired},
		{name: "owned drifted: repair; owned stale: prune",
			existing: []networkingv1.NetworkPolicy{drifted(deny), nginx, metrics, stale},
			update:   []string{deny.Name}, prune: []string{stale.Name}},
		{name: "foreign object at the default-deny name: conflict, allow rules not written, nothing pruned",
			existing:  []networkingv1.NetworkPolicy{foreign(deny.Name), stale},
			conflicts: []string{deny.Name}},
		{name: "conflict elsewhere: a removed rule's policy is still pruned behind the owned default-deny",
			existing:  []networkingv1.NetworkPolicy{deny, foreign(nginx.Name), stale},
			prune:     []string{stale.Name},
			conflicts: []string{nginx.Name}},
		{name: "conflict elsewhere: nothing is pruned while the owned default-deny is drifted open",
			existing:  []networkingv1.NetworkPolicy{moved, foreign(nginx.Name), stale},
			conflicts: []string{nginx.Name}},
		{name: "foreign object at an allow name: only the default-deny is created",
			existing:  []networkingv1.NetworkPolicy{foreign(nginx.Name)},
			create:    []string{deny.Name},
			conflicts: []string{nginx.Name}},
		{name: "conflict: the default-deny is repaired in place but not moved to other pods",
			existing:  []networkingv1.NetworkPolicy{drifted(deny), foreign(metrics.Name), drifted(nginx)},
			update:    []string{deny.Name},
			conflicts: []string{metrics.Name}},
		{name: "conflict: a default-deny that would move is left as is",
			existing:  []networkingv1.NetworkPolicy{moved, foreign(metrics.Name)},
			conflicts: []string{metrics.Name}},
		{name: "a name contested by another WorkloadIsolation is not written, even when owned",
			existing:  []networkingv1.NetworkPolicy{drifted(deny), drifted(nginx), metrics},
			contested: []policy.Conflict{{Name: nginx.Name, Holder: "also generated by WorkloadIsolation x"}},
			update:    []string{deny.Name},
			conflicts: []string{nginx.Name}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := policy.PlanSync(wi, desired, tt.existing, tt.contested)
			var update, conflicts []string
			for _, u := range plan.Update {
				update = append(update, u.Want.Name)
				if u.Have.ResourceVersion != "" && u.Have.Name != u.Want.Name {
					t.Errorf("update pairs %s with %s", u.Want.Name, u.Have.Name)
				}
			}
			for _, c := range plan.Conflicts {
				conflicts = append(conflicts, c.Name)
			}
			for _, check := range []struct {
				what      string
				got, want []string
			}{
				{"create", names(plan.Create), tt.create},
				{"update", update, tt.update},
				{"prune", names(plan.Prune), tt.prune},
				{"conflicts", conflicts, tt.conflicts},
			} {
				if strings.Join(check.got, ",") != strings.Join(check.want, ",") {
					t.Errorf("%s = %v, want %v", check.what, check.got, check.want)
				}
			}
		})
	}
}

func TestCollisions(t *testing.T) {
	// "a" with rule "b-default-deny" and "a-allow-b" both generate
	// a-allow-b-default-deny.
	a := isolation("a", isolationv1alpha1.IngressRule{Name: "b-default-deny"})
	b := isolation("a-allow-b")
	c := isolation("c", isolationv1alpha1.IngressRule{Name: "nginx"})
	all := []isolationv1alpha1.WorkloadIsolation{*a, *b, *c}
	for _, tt := range []struct {
		wi   *isolationv1alpha1.WorkloadIsolation
		want string
	}{
		{a, "a-allow-b-default-deny (also generated by WorkloadIsolation a-allow-b)"},
		{b, "a-allow-b-default-deny (also generated by WorkloadIsolation a)"},
		{c, ""},
	} {
		var got []string
		for _, conflict := range policy.Collisions(tt.wi, all) {
			got = append(got, conflict.String())
		}
		if strings.Join(got, ";") != tt.want {
			t.Errorf("Collisions(%s) = %v, want %q", tt.wi.Name, got, tt.want)
		}
	}
}
