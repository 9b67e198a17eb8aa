package controller

import (
	"fmt"
	"maps"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"unsafe"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	isolationv1alpha1 "github.com/isolator-dev/isolator/api/v1alpha1"
)

func fullMetadata(kind string) *metav1.PartialObjectMetadata {
	now := metav1.Now()
	return &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kind},
		ObjectMeta: metav1.ObjectMeta{
			Name: "model-7d9f8-abcde", GenerateName: "model-7d9f8-", Namespace: "team-a", UID: "0b6c3c8e-1f0a-4b8e-9d4c-3f2a1b0c9d8e",
			ResourceVersion: "4711", Generation: 1, CreationTimestamp: now, DeletionTimestamp: &now,
			Labels:          map[string]string{"app": "model", "pod-template-hash": "7d9f8"},
			Annotations:     map[string]string{"cni.projectcalico.org/podIP": "10.0.0.7/32"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "model-7d9f8", UID: "1", Controller: ptr.To(true)}},
			Finalizers:      []string{"example.com/keep"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
		},
	}
}

// Cached pods and namespaces keep what the operator reads (identity, labels,
// deletion) and nothing else; what it does not read costs memory on every
// pod of a large cluster.
func TestSlimObjectsCutsPodAndNamespaceMetadata(t *testing.T) {
	for _, kind := range []string{"Pod", "Namespace"} {
		in := fullMetadata(kind)
		got, err := CacheOptions().DefaultTransform(in.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		want := &metav1.PartialObjectMetadata{
			TypeMeta: in.TypeMeta,
			ObjectMeta: metav1.ObjectMeta{Name: in.Name, Namespace: in.Namespace, UID: in.UID, ResourceVersion: in.ResourceVersion,
				DeletionTimestamp: in.DeletionTimestamp, Labels: in.Labels},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", kind, got, want)
		}
	}
}

// Other objects keep all but their managed fields: owner references of
// Cilium policies, for example, decide whether the operator owns them.
func TestSlimObjectsKeepsOtherObjects(t *testing.T) {
	cnp := fullMetadata("CiliumNetworkPolicy")
	cnp.APIVersion = "cilium.io/v2"
	got, err := CacheOptions().DefaultTransform(cnp)
	if err != nil {
		t.Fatal(err)
	}
	obj := got.(metav1.Object)
	if obj.GetManagedFields() != nil {
		t.Error("managed fields kept")
	}
	if len(obj.GetOwnerReferences()) != 1 || len(obj.GetAnnotations()) != 1 || len(obj.GetFinalizers()) != 1 {
		t.Errorf("metadata cut: %+v", obj)
	}
}

// NetworkPolicies and WorkloadIsolations keep everything the operator reads
// (spec, status, labels, owner references, finalizers) and lose their
// managed fields and annotations: a tenant's policy with a large annotation
// costs the operator nothing, nor does kubectl apply's copy of the object.
func TestSlimObjectsDropsAnnotationsOfPoliciesAndIsolations(t *testing.T) {
	meta := fullMetadata("").ObjectMeta
	meta.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = strings.Repeat("x", 100000)
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "model"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"api"}}}}
	np := &networkingv1.NetworkPolicy{ObjectMeta: *meta.DeepCopy(), Spec: networkingv1.NetworkPolicySpec{
		PodSelector: *selector.DeepCopy(),
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: selector.DeepCopy(), NamespaceSelector: &metav1.LabelSelector{}}}}},
		Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}}}},
	}}
	wi := &isolationv1alpha1.WorkloadIsolation{ObjectMeta: *meta.DeepCopy(),
		Spec: isolationv1alpha1.WorkloadIsolationSpec{Target: isolationv1alpha1.Target{PodSelector: &isolationv1alpha1.LabelSelector{MatchLabels: map[string]string{"app": "model"}}}},
		Status: isolationv1alpha1.WorkloadIsolationStatus{
			Conditions:     []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Isolated", Message: "in place"}},
			TargetSelector: selector.DeepCopy(),
			Policies:       []isolationv1alpha1.PolicyReference{{Kind: "NetworkPolicy", Name: "model-ingress"}},
			CNI:            &isolationv1alpha1.CNIStatus{Name: "cilium", Evidence: "DaemonSet kube-system/cilium"},
		}}
	for _, in := range []client.Object{np, wi} {
		want := in.DeepCopyObject().(client.Object)
		want.SetManagedFields(nil)
		want.SetAnnotations(nil)
		got, err := CacheOptions().DefaultTransform(in)
		if err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("%T: got %+v, want %+v", in, got, want)
		}
	}
	// Selectors equal across objects are one map in the cache.
	if reflect.ValueOf(np.Spec.PodSelector.MatchLabels).UnsafePointer() != reflect.ValueOf(wi.Status.TargetSelector.MatchLabels).UnsafePointer() ||
		reflect.ValueOf(np.Spec.PodSelector.MatchLabels).UnsafePointer() != reflect.ValueOf(wi.Spec.Target.PodSelector.MatchLabels).UnsafePointer() {
		t.Error("the target selector of a WorkloadIsolation and of its policy are separate maps")
	}
}

// Label strings recur on thousands of pods; the cache holds one copy.
func TestSlimObjectsSharesLabelStrings(t *testing.T) {
	decoded := func() *metav1.PartialObjectMetadata {
		// As decoded from the API server: every string a copy of its own.
		m := fullMetadata("Pod")
		m.Namespace = strings.Clone(m.Namespace)
		m.Labels = map[string]string{strings.Clone("app"): strings.Clone("model")}
		return m
	}
	// Sharing holds between two collections; keep one from interfering.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	a, _ := slimObjects(decoded())
	b, _ := slimObjects(decoded())
	la, lb := a.(*metav1.PartialObjectMetadata).Labels, b.(*metav1.PartialObjectMetadata).Labels
	if unsafeData(la["app"]) != unsafeData(lb["app"]) {
		t.Error("label values of two pods are separate copies")
	}
	if unsafeData(a.(*metav1.PartialObjectMetadata).Namespace) != unsafeData(b.(*metav1.PartialObjectMetadata).Namespace) {
		t.Error("namespaces of two pods are separate copies")
	}
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }

// Pods with equal labels share one label map; different labels do not mix,
// and the table of shared sets stays bounded under label churn.
func TestSlimObjectsSharesLabelSets(t *testing.T) {
	pod := func(labels map[string]string) map[string]string {
		m := fullMetadata("Pod")
		m.Labels = labels
		out, _ := slimObjects(m)
		return out.(*metav1.PartialObjectMetadata).Labels
	}
	a := pod(map[string]string{"app": "model", "pod-template-hash": "7d9f8"})
	b := pod(map[string]string{"pod-template-hash": strings.Clone("7d9f8"), "app": strings.Clone("model")})
	if reflect.ValueOf(a).UnsafePointer() != reflect.ValueOf(b).UnsafePointer() {
		t.Error("equal label sets are separate maps")
	}
	// A set whose texts spell another set's labels is another set: a
	// WorkloadIsolation's selector reaches the cache unvalidated, and must
	// not replace the labels of other objects.
	for _, forged := range []map[string]string{
		{"app": "model\x00pod-template-hash\x007d9f8"},
		{"app": "model", "pod-template-hash": "7d9f8", "": ""},
		{"app5:model17:pod-template-hash5:7d9f8": ""},
	} {
		if got := pod(forged); !maps.Equal(got, forged) {
			t.Errorf("forged label set %q came back as %q", forged, got)
		}
		if again := pod(map[string]string{"app": "model", "pod-template-hash": "7d9f8"}); !maps.Equal(again, a) {
			t.Errorf("after forged set %q, a pod's labels came back as %q", forged, again)
		}
	}
	// Label churn does not grow the table beyond its bound in bytes.
	for i := range 100000 {
		pod(map[string]string{"app": "model", "pod-template-hash": fmt.Sprint(i)})
	}
	podLabels.mu.Lock()
	n := podLabels.bytes
	podLabels.mu.Unlock()
	if n > maxPodLabelTableBytes {
		t.Errorf("label table holds %d bytes, bound %d", n, maxPodLabelTableBytes)
	}
	// An outsized label set is not kept in the table at all.
	huge := map[string]string{}
	for i := range 20 {
		huge[fmt.Sprintf("key-%d", i)] = strings.Repeat("v", 63)
	}
	got := pod(huge)
	podLabels.mu.Lock()
	defer podLabels.mu.Unlock()
	for _, m := range podLabels.sets {
		if reflect.ValueOf(m).UnsafePointer() == reflect.ValueOf(got).UnsafePointer() {
			t.Error("an outsized label set is kept in the table")
		}
	}
	if !reflect.DeepEqual(got, huge) {
		t.Error("an outsized label set lost labels")
	}
}

// The pods of a workload share their labels even when many other label
// sets arrive between them (a large cluster listed or created out of
// order): 20,000 distinct sets fit in the pods' table's two generations.
func TestSlimObjectsSharesLabelSetsArrivingFarApart(t *testing.T) {
	table := newLabelSets(maxPodLabelTableBytes)
	labels := func(app string) map[string]string {
		return map[string]string{"app": app, "app.kubernetes.io/part-of": "bench", "pod-template-hash": "5f7d9c8b4"}
	}
	first := table.share(labels("workload-0"))
	for i := range 20000 {
		table.share(labels(fmt.Sprintf("workload-%d", i+1)))
	}
	if again := table.share(labels(strings.Clone("workload-0"))); reflect.ValueOf(again).UnsafePointer() != reflect.ValueOf(first).UnsafePointer() {
		t.Error("two pods of a workload hold separate label maps after 20,000 other label sets")
	}
}

// The table's bound is in real bytes: what it holds is not more than it
// counts, for small and for wide label sets (a tenant's pods may carry
// hundreds of labels).
func TestLabelTableCountsWhatItHolds(t *testing.T) {
	for _, width := range []int{3, 9, 16, 32, 450} {
		table := newLabelSets(1 << 30)
		sets := make([]map[string]string, 1000)
		for i := range sets {
			sets[i] = map[string]string{}
			for j := range width {
				sets[i][fmt.Sprintf("%c%c", 'a'+j%26, 'a'+j/26)] = ""
			}
			sets[i]["set"] = fmt.Sprint(i)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, set := range sets {
			table.share(set)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		table.mu.Lock()
		counted := table.bytes
		table.mu.Unlock()
		t.Logf("%d labels per set: %d bytes held, %d counted", width+1, held, counted)
		// Allowance for what else the test process allocates meanwhile.
		if held > int64(counted)+int64(counted)/20+64<<10 {
			t.Errorf("%d labels per set: the table holds %d bytes and counts %d", width+1, held, counted)
		}
		runtime.KeepAlive(table)
		runtime.KeepAlive(sets) // the sets' own memory is not the table's
	}
}
