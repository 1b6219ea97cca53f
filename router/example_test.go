package router_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/domicile/domicile"
	"github.com/domicile/domicile/router"
	"github.com/domicile/domicile/sqlite"
)

func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "router-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	ctl, err := sqlite.OpenControl(filepath.Join(dir, "control.db"), nil)
	if err != nil {
		panic(err)
	}
	defer ctl.Close()
	st, err := sqlite.OpenStore(filepath.Join(dir, "us-east.db"), "us-east")
	if err != nil {
		panic(err)
	}
	defer st.Close()
	if _, err := st.DB().Exec(`CREATE TABLE orders (user_id TEXT NOT NULL, order_id INTEGER NOT NULL,
		total REAL, PRIMARY KEY (user_id, order_id))`); err != nil {
		panic(err)
	}
	orders, err := st.DescribeTable(ctx, "orders")
	if err != nil {
		panic(err)
	}
	orders.SubjectColumn = "user_id"
	commerce := &domicile.Dataset{Name: "commerce", Tables: []*domicile.Table{orders}}
	if err := st.Install(ctx, []*domicile.Dataset{commerce}, domicile.InstallOptions{}); err != nil {
		panic(err)
	}

	r := router.New(router.Config{
		Directory: ctl,
		Stores:    map[string]domicile.Store{"us-east": st},
		Datasets:  []*domicile.Dataset{commerce},
		Place:     func(domicile.Subject, string) (string, error) { return "us-east", nil },
	})
	if _, err := r.CreateSubject(ctx, domicile.Subject{ID: "u1", Country: "US"}); err != nil {
		panic(err)
	}
	if _, err := r.Put(ctx, "commerce", "orders", "u1", map[string]any{"order_id": 7, "total": 19.5}); err != nil {
		panic(err)
	}
	page, err := r.Get(ctx, "commerce", "orders", "u1", router.Query{})
	if err != nil {
		panic(err)
	}
	fmt.Println(page.Region, page.Rows)
	// Output: us-east [map[order_id:7 total:19.5 user_id:u1]]
}
