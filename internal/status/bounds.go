package status

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

// Bounds of the status fields, within the limits the CRD sets, so that a
// status computed from the largest inputs is still accepted by the API
// server (a rejected status patch would leave an older, healthier status in
// place).
const (
	// MaxMessage bounds a condition message (the API allows 32768).
	MaxMessage = 4096
	// MaxTarget bounds status.target (the CRD allows 4096).
	MaxTarget = 4096
	// MaxSummary bounds an exposure summary (the CRD allows 2048).
	MaxSummary = 2048
	// MaxExposures bounds status.exposure (the CRD allows 32).
	MaxExposures = 32
	// MaxPolicies bounds status.policies (the CRD allows 64).
	MaxPolicies = 64
	// MaxEvidence bounds status.cni.evidence (the CRD allows 4096).
	MaxEvidence = 4096
	// MaxGuardMessage bounds status.guard[].message (the CRD allows 2048),
	// MaxGuardObject status.guard[].object (512).
	MaxGuardMessage = 2048
	MaxGuardObject  = 512
)

// truncate cuts s to at most n bytes, ending in "..." when cut, without
// splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}

// JoinBounded joins at most limit items with ", " and says how many more
// there are ("a, b and 3 more").
func JoinBounded(items []string, limit int) string {
	if len(items) <= limit {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:limit], ", "), len(items)-limit)
}

// SetTarget records the resolved target selector: structured, and in
// kubectl's syntax for display ("(all pods)" for an empty selector).
func SetTarget(st *isolationv1alpha1.WorkloadIsolationStatus, selector *metav1.LabelSelector) {
	st.TargetSelector = selector.DeepCopy()
	st.Target = truncate(FormatTarget(selector), MaxTarget)
}

// FormatTarget renders a target selector in kubectl's syntax, AllPods for
// an empty one.
func FormatTarget(selector *metav1.LabelSelector) string {
	if len(selector.MatchLabels) == 0 && len(selector.MatchExpressions) == 0 {
		return AllPods
	}
	return metav1.FormatLabelSelector(selector)
}

// AllPods is status.target of an empty selector.
const AllPods = "(all pods)"

// SetPolicies records the generated objects, at most MaxPolicies of them
// (policyCount keeps the full number).
func SetPolicies(st *isolationv1alpha1.WorkloadIsolationStatus, refs []isolationv1alpha1.PolicyReference) {
	st.PolicyCount = int32(len(refs))
	if len(refs) > MaxPolicies {
		refs = refs[:MaxPolicies]
	}
	st.Policies = refs
}
