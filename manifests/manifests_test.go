package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/duetcdn/duet/internal/image"
)

// knownTypes maps apiVersion/kind to the k8s.io/api type an object must decode into. A kind not
// listed here fails the test: every object the manifests produce is checked against its schema.
var knownTypes = map[string]func() any{
	"v1/Namespace":                           func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                              func() any { return &corev1.Secret{} },
	"v1/PersistentVolumeClaim":               func() any { return &corev1.PersistentVolumeClaim{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                    func() any { return &appsv1.StatefulSet{} },
	"batch/v1/Job":                           func() any { return &batchv1.Job{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return &networkingv1.NetworkPolicy{} },
}

// operatorSecrets are the Secrets the overlays refer to and the operators create (README.md,
// "Secrets"), with their keys. Nothing else may be referred to without being built.
var operatorSecrets = map[string][]string{
	"duet-origin-s3":    {"access_key", "secret_key"},
	"duet-purge-tokens": {"tokens"},
	"duet-replicate-s3": {"access_key", "secret_key"},
	// The edge admin listener's bearer token (/purge, /debug/pprof).
	"duet-edge-admin": {"token"},
	// Each role's NATS nkey seed (README.md, "NATS identities").
	"duet-nats-edge":      {"seed"},
	"duet-nats-steering":  {"seed"},
	"duet-nats-purge":     {"seed"},
	"duet-nats-replicate": {"seed"},
	// The edges' and steering's HTTPS certificates, of type kubernetes.io/tls (tlsSecrets).
	"duet-edge-tls":     {"tls.crt", "tls.key"},
	"duet-steering-tls": {"tls.crt", "tls.key"},
}

// object is one built, decoded object.
type object struct {
	kind, name, namespace string
	obj                   any // a pointer to its k8s.io/api type
}

// workload is a pod template and what owns it.
type workload struct {
	kind, name, namespace string
	selector              *metav1.LabelSelector
	labels                map[string]string // the pod template's
	spec                  *corev1.PodSpec
	replicas              *int32 // Deployments and StatefulSets
	deploy                *appsv1.Deployment
	claims                []string // a StatefulSet's volume claim templates
}

func (w workload) String() string { return w.kind + " " + w.namespace + "/" + w.name }

// cluster is what one kustomization builds.
type cluster struct {
	dir        string
	objects    []object
	configMaps map[string]*corev1.ConfigMap // by namespace/name
	secrets    map[string]*corev1.Secret
	claims     map[string]*corev1.PersistentVolumeClaim
	workloads  []workload
	policies   []*networkingv1.NetworkPolicy
}

func key(ns, name string) string { return ns + "/" + name }

// build runs kustomize on dir as `kustomize build` does and decodes every object strictly:
// unknown fields, wrong case and duplicate fields fail, and so does an unknown kind.
func build(t *testing.T, dir string) *cluster {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	c := &cluster{dir: dir, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		claims: map[string]*corev1.PersistentVolumeClaim{}}
	for _, r := range rm.Resources() {
		gvk := r.GetApiVersion() + "/" + r.GetKind()
		what := fmt.Sprintf("%s: %s %s/%s", dir, gvk, r.GetNamespace(), r.GetName())
		mk, ok := knownTypes[gvk]
		if !ok {
			t.Errorf("%s: kind not known to the test: add its k8s.io/api type to knownTypes", what)
			continue
		}
		js, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: to JSON: %v", what, err)
		}
		v := mk()
		strict, err := sjson.UnmarshalStrict(js, v, sjson.DisallowUnknownFields)
		if err != nil {
			t.Errorf("%s: decode: %v", what, err)
			continue
		}
		for _, e := range strict {
			t.Errorf("%s: %v", what, e)
		}
		o := object{kind: r.GetKind(), name: r.GetName(), namespace: r.GetNamespace(), obj: v}
		c.objects = append(c.objects, o)
		checkMeta(t, what, o, v)
		switch x := v.(type) {
		case *corev1.ConfigMap:
			c.configMaps[key(x.Namespace, x.Name)] = x
		case *corev1.Secret:
			c.secrets[key(x.Namespace, x.Name)] = x
		case *corev1.PersistentVolumeClaim:
			c.claims[key(x.Namespace, x.Name)] = x
		case *appsv1.Deployment:
			c.workloads = append(c.workloads, workload{kind: "Deployment", name: x.Name, namespace: x.Namespace,
				selector: x.Spec.Selector, labels: x.Spec.Template.Labels, spec: &x.Spec.Template.Spec,
				replicas: x.Spec.Replicas, deploy: x})
		case *appsv1.StatefulSet:
			c.workloads = append(c.workloads, workload{kind: "StatefulSet", name: x.Name, namespace: x.Namespace,
				selector: x.Spec.Selector, labels: x.Spec.Template.Labels, spec: &x.Spec.Template.Spec,
				replicas: x.Spec.Replicas, claims: claimNames(x)})
		case *networkingv1.NetworkPolicy:
			c.policies = append(c.policies, x)
		case *batchv1.Job:
			c.workloads = append(c.workloads, workload{kind: "Job", name: x.Name, namespace: x.Namespace,
				labels: x.Spec.Template.Labels, spec: &x.Spec.Template.Spec})
		}
	}
	if len(c.objects) == 0 {
		t.Fatalf("%s: built no objects", dir)
	}
	return c
}

func claimNames(s *appsv1.StatefulSet) []string {
	var names []string
	for _, pvc := range s.Spec.VolumeClaimTemplates {
		names = append(names, pvc.Name)
	}
	return names
}

// checkMeta checks what the API server would refuse in any object's metadata.
func checkMeta(t *testing.T, what string, o object, v any) {
	t.Helper()
	if errs := validation.IsDNS1123Subdomain(o.name); len(errs) > 0 {
		t.Errorf("%s: name: %v", what, errs)
	}
	if o.kind != "Namespace" && o.namespace == "" {
		t.Errorf("%s: no namespace: an overlay must set one", what)
	}
	if m, ok := v.(metav1.Object); ok {
		for k, val := range m.GetLabels() {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				t.Errorf("%s: label key %q: %v", what, k, errs)
			}
			if errs := validation.IsValidLabelValue(val); len(errs) > 0 {
				t.Errorf("%s: label %s=%q: %v", what, k, val, errs)
			}
		}
	}
}

// overlays finds every overlay: a directory under overlays/ with a kustomization.yaml.
func overlays(t *testing.T) []string {
	t.Helper()
	ms, err := filepath.Glob("overlays/*/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, m := range ms {
		dirs = append(dirs, filepath.Dir(m))
	}
	if len(dirs) < 2 {
		t.Fatalf("found %d overlays (%v): want one per region, at least two", len(dirs), dirs)
	}
	return dirs
}

func (c *cluster) configMap(ns, name string) *corev1.ConfigMap { return c.configMaps[key(ns, name)] }

// region is the overlay's region: REGION in its duet-region ConfigMap.
func (c *cluster) region(t *testing.T) (region, namespace string) {
	t.Helper()
	for _, cm := range c.configMaps {
		if strings.HasPrefix(cm.Name, "duet-region") {
			if region != "" {
				t.Fatalf("%s: two duet-region ConfigMaps", c.dir)
			}
			region, namespace = cm.Data["REGION"], cm.Namespace
		}
	}
	if region == "" {
		t.Fatalf("%s: no duet-region ConfigMap with REGION", c.dir)
	}
	return region, namespace
}

// component is the app.kubernetes.io/component label of a workload's pods.
func (w workload) component() string { return w.labels["app.kubernetes.io/component"] }

func (c *cluster) workload(t *testing.T, component string) workload {
	t.Helper()
	for _, w := range c.workloads {
		if w.component() == component && w.kind == "Deployment" {
			return w
		}
	}
	t.Fatalf("%s: no Deployment for component %q", c.dir, component)
	return workload{}
}

// TestOverlays builds every region's overlay and checks what an operator relies on.
func TestOverlays(t *testing.T) {
	regions := map[string]string{}    // region → overlay
	namespaces := map[string]string{} // namespace → overlay
	var all []string                  // the regions the roles are configured with
	demo := build(t, "demo")
	for _, dir := range overlays(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := build(t, dir)
			region, ns := c.region(t)
			if other, dup := regions[region]; dup {
				t.Errorf("%s and %s both set region %q: each overlay is one region", other, dir, region)
			}
			regions[region] = dir
			if other, dup := namespaces[ns]; dup {
				t.Errorf("%s and %s both use namespace %q", other, dir, ns)
			}
			namespaces[ns] = dir
			if filepath.Base(dir) != region {
				t.Errorf("%s sets region %q: name the overlay after its region", dir, region)
			}
			checkWorkloads(t, c, false)
			checkServices(t, c)
			checkEdgeScaling(t, c)
			checkNoKeysInConfigMaps(t, c)
			for _, w := range c.workloads {
				if got := w.labels["duetcdn.io/region"]; got != region {
					t.Errorf("%s: pod label duetcdn.io/region=%q, want %q (alerts and dashboard group by it)", w, got, region)
				}
			}
			for _, want := range []string{"edge", "steering", "purge", "replicate"} {
				c.workload(t, want)
			}
			facts := checkRoles(t, c, region)
			all = facts.regions["purge regions"]
			// Edges and steering serve HTTPS with a certificate from a Secret (ACME is the
			// component's, TestACMEComponent), and the demo's Secrets hold one they load.
			for role, rt := range facts.tls {
				if len(rt.cfg.Certificates) == 0 || rt.acme {
					t.Errorf("%s: want its certificate from a Secret (tls.certificates), got certificates %v, acme.domains %v",
						role, rt.cfg.Certificates, rt.cfg.ACME.Domains)
				}
			}
			checkDemoCertificates(t, demo, ns, region, facts.tls)
			// On the demo cluster, every URL the roles dial is a Service of the demo.
			for what, u := range facts.urls {
				if err := demo.resolve(u); err != nil {
					t.Errorf("%s %s: %v", what, u, err)
				}
			}
		})
	}
	// The regions the roles know are the regions that have an overlay.
	if got := sortedKeys(regions); !sameSet(got, all) {
		t.Errorf("overlays exist for %v, but the roles know the regions %v", got, all)
	}
}

// checkWorkloads checks every pod template: probes, resources, security, and that everything a
// pod refers to (ConfigMaps, Secrets, volumes, ports, variables) exists.
func checkWorkloads(t *testing.T, c *cluster, demo bool) {
	t.Helper()
	for _, w := range c.workloads {
		if w.selector != nil {
			sel, err := metav1.LabelSelectorAsSelector(w.selector)
			if err != nil {
				t.Errorf("%s: selector: %v", w, err)
			} else if !sel.Matches(labels.Set(w.labels)) {
				t.Errorf("%s: selector %v does not match its own pods' labels %v", w, sel, w.labels)
			}
		}
		ps := w.spec
		volumes := map[string]corev1.Volume{}
		for _, n := range w.claims {
			volumes[n] = corev1.Volume{Name: n}
		}
		for _, v := range ps.Volumes {
			volumes[v.Name] = v
			switch {
			case v.ConfigMap != nil:
				cm := c.configMap(w.namespace, v.ConfigMap.Name)
				if cm == nil {
					t.Errorf("%s: volume %s: ConfigMap %q is not built", w, v.Name, v.ConfigMap.Name)
				}
				for _, it := range v.ConfigMap.Items {
					if _, ok := cm.Data[it.Key]; cm != nil && !ok {
						t.Errorf("%s: volume %s: ConfigMap %s has no key %q", w, v.Name, cm.Name, it.Key)
					}
				}
			case v.Secret != nil:
				checkSecretRef(t, c, w, v.Secret.SecretName, "", v.Secret.Optional)
				checkSecretMode(t, w, v)
			}
		}
		for _, ctr := range append(slices.Clone(ps.InitContainers), ps.Containers...) {
			what := fmt.Sprintf("%s container %s", w, ctr.Name)
			checkContainer(t, c, w, what, ctr, volumes, demo)
		}
		if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken must be false: nothing here talks to the API server", w)
		}
	}
}

var imageTag = regexp.MustCompile(`^[^:@]+(:[A-Za-z0-9_][A-Za-z0-9_.-]*|@sha256:[0-9a-f]{64})$`)

func checkContainer(t *testing.T, c *cluster, w workload, what string, ctr corev1.Container,
	volumes map[string]corev1.Volume, demo bool,
) {
	t.Helper()
	if !imageTag.MatchString(ctr.Image) || strings.HasSuffix(ctr.Image, ":latest") {
		t.Errorf("%s: image %q: pin a tag or digest (not latest)", what, ctr.Image)
	}
	if !demo && !strings.HasPrefix(ctr.Image, image.Name+":") {
		t.Errorf("%s: image %q: every Duet role runs the duet image, built as %s by make image", what, ctr.Image, image.Name)
	}
	ports := map[string]int32{}
	numbers := map[int32]bool{}
	for _, p := range ctr.Ports {
		if p.Name != "" {
			ports[p.Name] = p.ContainerPort
		}
		numbers[p.ContainerPort] = true
	}
	probePort := func(kind string, p *corev1.Probe, wantPath string) {
		if p == nil || p.HTTPGet == nil {
			if w.kind != "Job" {
				t.Errorf("%s: no HTTP %s probe", what, kind)
			}
			return
		}
		path, _, _ := strings.Cut(p.HTTPGet.Path, "?")
		if wantPath != "" && path != wantPath {
			t.Errorf("%s: %s probe path %q, want %q", what, kind, p.HTTPGet.Path, wantPath)
		}
		pp := p.HTTPGet.Port
		if pp.StrVal != "" {
			if _, ok := ports[pp.StrVal]; !ok {
				t.Errorf("%s: %s probe port %q is not a declared container port", what, kind, pp.StrVal)
			}
		} else if !numbers[pp.IntVal] {
			t.Errorf("%s: %s probe port %d is not a declared container port", what, kind, pp.IntVal)
		}
	}
	if !demo {
		probePort("readiness", ctr.ReadinessProbe, "/readyz")
		probePort("liveness", ctr.LivenessProbe, "/healthz")
	} else if w.kind != "Job" {
		probePort("readiness", ctr.ReadinessProbe, "")
		probePort("liveness", ctr.LivenessProbe, "")
	}
	if ctr.StartupProbe != nil {
		probePort("startup", ctr.StartupProbe, "/healthz")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := ctr.Resources.Requests[r]; !ok || q.IsZero() {
			t.Errorf("%s: no %s request", what, r)
		}
	}
	if q, ok := ctr.Resources.Limits[corev1.ResourceMemory]; !ok || q.IsZero() {
		t.Errorf("%s: no memory limit", what)
	} else if rq := ctr.Resources.Requests[corev1.ResourceMemory]; rq.Cmp(q) > 0 {
		t.Errorf("%s: memory request %s above the limit %s", what, rq.String(), q.String())
	}
	sc, psc := ctr.SecurityContext, w.spec.SecurityContext
	nonRoot := sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot || psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	if !nonRoot {
		t.Errorf("%s: runAsNonRoot is not set", what)
	}
	if !demo {
		// The duet image runs as image.UID; a different runAsUser would work but own the
		// volumes (fsGroup) differently from what the image's /etc/passwd says.
		var uid *int64
		if psc != nil {
			uid = psc.RunAsUser
		}
		if sc != nil && sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if uid == nil || *uid != image.UID {
			t.Errorf("%s: runAsUser is not %d, the duet image's user", what, image.UID)
		}
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", what)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", what)
	}
	if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: capabilities do not drop ALL", what)
	}
	for _, m := range ctr.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("%s: mounts volume %q, which the pod does not declare", what, m.Name)
		}
	}
	if _, err := containerEnv(c, w, ctr); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

// checkSecretMode: the kubelet writes a Secret volume's files as root, in the pod's fsGroup when
// it has one: files others may not read (defaultMode 0440, say) are readable by a non-root
// container only through that group.
func checkSecretMode(t *testing.T, w workload, v corev1.Volume) {
	t.Helper()
	mode := int32(0o644)
	if v.Secret.DefaultMode != nil {
		mode = *v.Secret.DefaultMode
	}
	modes := []int32{mode}
	for _, it := range v.Secret.Items {
		if it.Mode != nil {
			modes = append(modes, *it.Mode)
		}
	}
	psc := w.spec.SecurityContext
	for _, m := range modes {
		if m&0o004 != 0 {
			continue
		}
		if psc == nil || psc.FSGroup == nil || m&0o040 == 0 {
			t.Errorf("%s: Secret volume %s has mode %#o: without the pod's fsGroup (and group read) the non-root user cannot read it",
				w, v.Name, m)
		}
	}
}

// checkSecretRef checks that a Secret (and key) referred to is built, or is one the operators
// create (operatorSecrets).
func checkSecretRef(t *testing.T, c *cluster, w workload, name, k string, optional *bool) {
	t.Helper()
	if s := c.secrets[key(w.namespace, name)]; s != nil {
		_, inData := s.Data[k]
		_, inString := s.StringData[k]
		if k != "" && !inData && !inString {
			t.Errorf("%s: Secret %s has no key %q", w, name, k)
		}
		return
	}
	keys, ok := operatorSecrets[name]
	switch {
	case !ok && (optional == nil || !*optional):
		t.Errorf("%s: Secret %q is neither built nor one the operators create (operatorSecrets, README.md)", w, name)
	case ok && k != "" && !slices.Contains(keys, k):
		t.Errorf("%s: Secret %s: key %q is not one README.md tells the operators to create (%v)", w, name, k, keys)
	}
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// fakeFields are what the downward API would give, for the role config checks.
var fakeFields = map[string]string{
	"metadata.name":      "duet-pod-7d9f8-abcde",
	"metadata.namespace": "duet-test",
	"status.podIP":       "10.0.0.7",
	"spec.nodeName":      "node-1",
}

// containerEnv resolves a container's environment as the kubelet would: envFrom first, then env
// in order, with $(VAR) referring to what is defined before. Secrets the operators create get a
// made-up value of the right shape. Every reference must resolve.
func containerEnv(c *cluster, w workload, ctr corev1.Container) ([]string, error) {
	vars := map[string]string{}
	var errs []string
	for _, ef := range ctr.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm := c.configMap(w.namespace, ef.ConfigMapRef.Name)
			if cm == nil {
				errs = append(errs, fmt.Sprintf("envFrom ConfigMap %q is not built", ef.ConfigMapRef.Name))
				continue
			}
			for k, v := range cm.Data {
				vars[ef.Prefix+k] = v
			}
		case ef.SecretRef != nil:
			errs = append(errs, fmt.Sprintf("envFrom Secret %q: name the keys with secretKeyRef instead", ef.SecretRef.Name))
		}
	}
	order := slices.Sorted(func(yield func(string) bool) {
		for k := range vars {
			if !yield(k) {
				return
			}
		}
	})
	for _, e := range ctr.Env {
		val := e.Value
		switch vf := e.ValueFrom; {
		case vf == nil:
			val = varRef.ReplaceAllStringFunc(e.Value, func(m string) string {
				name := varRef.FindStringSubmatch(m)[1]
				v, ok := vars[name]
				if !ok {
					errs = append(errs, fmt.Sprintf("env %s refers to $(%s), which is not defined before it", e.Name, name))
				}
				return v
			})
		case vf.FieldRef != nil:
			v, ok := fakeFields[vf.FieldRef.FieldPath]
			if !ok {
				errs = append(errs, fmt.Sprintf("env %s: fieldRef %q is not known to the test", e.Name, vf.FieldRef.FieldPath))
			}
			val = v
		case vf.SecretKeyRef != nil:
			name, k := vf.SecretKeyRef.Name, vf.SecretKeyRef.Key
			if s := c.secrets[key(w.namespace, name)]; s != nil {
				if v, ok := s.Data[k]; ok {
					val = string(v)
				} else if v, ok := s.StringData[k]; ok {
					val = v
				} else {
					errs = append(errs, fmt.Sprintf("env %s: Secret %s has no key %q", e.Name, name, k))
				}
			} else if keys, ok := operatorSecrets[name]; ok && slices.Contains(keys, k) {
				val = "made-up-" + k
				if k == "tokens" {
					val = "probe:0123456789abcdef0123"
				}
			} else {
				errs = append(errs, fmt.Sprintf("env %s: Secret %s key %q is neither built nor in operatorSecrets", e.Name, name, k))
			}
		case vf.ConfigMapKeyRef != nil:
			cm := c.configMap(w.namespace, vf.ConfigMapKeyRef.Name)
			if cm == nil {
				errs = append(errs, fmt.Sprintf("env %s: ConfigMap %q is not built", e.Name, vf.ConfigMapKeyRef.Name))
			} else if v, ok := cm.Data[vf.ConfigMapKeyRef.Key]; ok {
				val = v
			} else {
				errs = append(errs, fmt.Sprintf("env %s: ConfigMap %s has no key %q", e.Name, cm.Name, vf.ConfigMapKeyRef.Key))
			}
		default:
			errs = append(errs, fmt.Sprintf("env %s: valueFrom kind not known to the test", e.Name))
		}
		if _, seen := vars[e.Name]; !seen {
			order = append(order, e.Name)
		}
		vars[e.Name] = val
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	if len(errs) > 0 {
		return env, fmt.Errorf("environment: %s", strings.Join(errs, "; "))
	}
	return env, nil
}

// checkServices checks that every Service selects pods that exist and that its target ports
// are ports those pods declare.
func checkServices(t *testing.T, c *cluster) {
	t.Helper()
	for _, o := range c.objects {
		svc, ok := o.obj.(*corev1.Service)
		if !ok {
			continue
		}
		if len(svc.Spec.Selector) == 0 {
			t.Errorf("Service %s selects nothing", svc.Name)
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		var pods []workload
		for _, w := range c.workloads {
			if w.namespace == svc.Namespace && w.kind != "Job" && sel.Matches(labels.Set(w.labels)) {
				pods = append(pods, w)
			}
		}
		if len(pods) != 1 {
			t.Errorf("Service %s selector %v matches %d workloads, want exactly one: %v", svc.Name, sel, len(pods), pods)
			continue
		}
		for _, p := range svc.Spec.Ports {
			tp := p.TargetPort
			found := false
			for _, ctr := range pods[0].spec.Containers {
				for _, cp := range ctr.Ports {
					if tp.StrVal != "" && cp.Name == tp.StrVal || tp.StrVal == "" && cp.ContainerPort == tp.IntVal ||
						tp.StrVal == "" && tp.IntVal == 0 && cp.ContainerPort == p.Port {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("Service %s port %s: target %s is not a port of %s", svc.Name, p.Name, tp.String(), pods[0])
			}
		}
	}
}

// checkEdgeScaling checks the edge's autoscaler and disruption budget.
func checkEdgeScaling(t *testing.T, c *cluster) {
	t.Helper()
	edge := c.workload(t, "edge")
	var hpas, pdbs int
	for _, o := range c.objects {
		switch x := o.obj.(type) {
		case *autoscalingv2.HorizontalPodAutoscaler:
			hpas++
			ref := x.Spec.ScaleTargetRef
			if ref.Kind != "Deployment" || ref.Name != edge.name || ref.APIVersion != "apps/v1" {
				t.Errorf("HPA %s targets %s %s (%s), want the edge Deployment %s", x.Name, ref.Kind, ref.Name, ref.APIVersion, edge.name)
			}
			if x.Spec.MinReplicas == nil || *x.Spec.MinReplicas < 2 || *x.Spec.MinReplicas > x.Spec.MaxReplicas {
				t.Errorf("HPA %s: minReplicas %v must be at least 2 (one edge down leaves one) and at most maxReplicas %d",
					x.Name, x.Spec.MinReplicas, x.Spec.MaxReplicas)
			}
			cpu := false
			for _, m := range x.Spec.Metrics {
				cpu = cpu || m.Resource != nil && m.Resource.Name == corev1.ResourceCPU
			}
			if !cpu {
				t.Errorf("HPA %s does not scale on CPU", x.Name)
			}
		case *policyv1.PodDisruptionBudget:
			sel, err := metav1.LabelSelectorAsSelector(x.Spec.Selector)
			if err != nil {
				t.Errorf("PDB %s: %v", x.Name, err)
				continue
			}
			var matched []string
			for _, w := range c.workloads {
				if sel.Matches(labels.Set(w.labels)) {
					matched = append(matched, w.String())
				}
			}
			if len(matched) != 1 {
				t.Errorf("PDB %s selects %v, want exactly one workload", x.Name, matched)
			}
			if sel.Matches(labels.Set(edge.labels)) {
				pdbs++
				if x.Spec.MaxUnavailable == nil && x.Spec.MinAvailable == nil {
					t.Errorf("PDB %s sets neither maxUnavailable nor minAvailable", x.Name)
				}
			}
		}
	}
	if hpas != 1 || pdbs != 1 {
		t.Errorf("%d HPAs and %d PDBs select the edge, want one of each", hpas, pdbs)
	}
	if edge.replicas != nil {
		t.Errorf("edge Deployment sets replicas=%d: the HPA owns the count, and apply would reset it", *edge.replicas)
	}
}

// TestOperatorSecretsDocumented: every Secret the overlays expect from the operators, and each of
// its keys, is explained in README.md.
func TestOperatorSecretsDocumented(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range operatorSecrets {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		if !strings.Contains(string(readme), n) {
			t.Errorf("README.md does not tell operators to create Secret %s", n)
		}
		for _, k := range operatorSecrets[n] {
			if !regexp.MustCompile(regexp.QuoteMeta(n) + `.*` + regexp.QuoteMeta(k)).Match(readme) {
				t.Errorf("README.md does not name key %s of Secret %s on the line that creates it", k, n)
			}
		}
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
