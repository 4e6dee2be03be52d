package admin

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// FleetStatus is what [EndpointFleet] answers: the fleet's shared config
// revision and every instance known to its registry.
type FleetStatus struct {
	// ConfigRevision is the etcd revision of the fleet's shared document;
	// 0 when none was pushed.
	ConfigRevision int64 `json:"config_revision"`
	// Instances are sorted by name.
	Instances []FleetInstance `json:"instances"`
}

// The states of a [FleetInstance].
const (
	// FleetUp: registered and on the fleet's config revision.
	FleetUp = "up"
	// FleetBehind: registered, but running an older config revision (a
	// document it refused, or one it has not applied yet).
	FleetBehind = "behind"
	// FleetGone: its registration's lease expired, or it stopped.
	FleetGone = "gone"
)

// FleetInstance is one gatehouse of a fleet as it reports itself under
// <prefix>instances/<name>.
type FleetInstance struct {
	// Name is the instance's fleet.name.
	Name string `json:"name"`
	// Address is where it is reached (fleet.address or listen.https).
	Address string `json:"address,omitempty"`
	// Version is its gatehouse version.
	Version string `json:"version,omitempty"`
	// ConfigRevision is the shared config revision it applied; 0 for
	// none.
	ConfigRevision int64 `json:"config_revision"`
	// Certificates counts the Certificates it holds and serves.
	Certificates int `json:"certificates"`
	// LastError is why it refused the fleet's latest document, if it did.
	LastError string `json:"last_error,omitempty"`
	// Started is when it started; Updated is when it last reported a
	// change.
	Started time.Time `json:"started,omitzero"`
	Updated time.Time `json:"updated,omitzero"`
	// State is [FleetUp], [FleetBehind] or [FleetGone]; empty in the
	// registry itself, set by whoever compares it with the fleet.
	State string `json:"state,omitempty"`
}

func (a *api) fleet(w http.ResponseWriter, r *http.Request) {
	if a.opts.Fleet == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("this gatehouse is not in a fleet (no storage.etcd)"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), fleetTimeout)
	defer cancel()
	st, err := a.opts.Fleet(ctx)
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	if st.Instances == nil {
		st.Instances = []FleetInstance{}
	}
	writeJSON(w, http.StatusOK, st)
}

// fleetTimeout bounds reading the registry from etcd, for the API and the
// dashboard, which must render while etcd is down.
const fleetTimeout = 3 * time.Second
