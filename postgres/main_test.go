package postgres

import (
	"testing"

	"github.com/domicile/domicile/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
