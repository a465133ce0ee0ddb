package bus

// What the external tests (package bus_test, which import natsserver) need of the unexported.
var (
	APIPrefix            = apiPrefix
	OriginStreamSubjects = originStreamSubjects
)
