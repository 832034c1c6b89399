package engine

import (
	"context"
	"fmt"
)

// InventoryPath is where an object lives under data.inventory:
// cluster/<groupVersion>/<kind>/<name> or
// namespace/<ns>/<groupVersion>/<kind>/<name>.
func InventoryPath(obj map[string]any) ([]string, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	if apiVersion == "" || kind == "" || name == "" {
		return nil, fmt.Errorf("inventory object needs apiVersion, kind and metadata.name")
	}
	if ns == "" {
		return []string{"cluster", apiVersion, kind, name}, nil
	}
	return []string{"namespace", ns, apiVersion, kind, name}, nil
}

// BuildInventory arranges objects in the inventory layout.
func BuildInventory(objs []map[string]any) (map[string]any, error) {
	root := map[string]any{"cluster": map[string]any{}, "namespace": map[string]any{}}
	for _, o := range objs {
		p, err := InventoryPath(o)
		if err != nil {
			return nil, err
		}
		cur := root
		for _, k := range p[:len(p)-1] {
			next, ok := cur[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[k] = next
			}
			cur = next
		}
		cur[p[len(p)-1]] = o
	}
	return root, nil
}

// SetInventory replaces the whole inventory with objs.
func (e *Engine) SetInventory(ctx context.Context, objs []map[string]any) error {
	root, err := BuildInventory(objs)
	if err != nil {
		return err
	}
	return e.writeInventory(ctx, nil, root)
}

// PutInventory adds or replaces one object in the inventory.
func (e *Engine) PutInventory(ctx context.Context, obj map[string]any) error {
	p, err := InventoryPath(obj)
	if err != nil {
		return err
	}
	return e.writeInventory(ctx, p, obj)
}

// DeleteInventory removes one object from the inventory.
func (e *Engine) DeleteInventory(ctx context.Context, obj map[string]any) error {
	p, err := InventoryPath(obj)
	if err != nil {
		return err
	}
	return e.writeInventory(ctx, p, nil)
}

func (e *Engine) writeInventory(ctx context.Context, path []string, v any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range e.drivers {
		if id, ok := d.(InventoryDriver); ok {
			if err := id.WriteInventory(ctx, path, v); err != nil {
				return fmt.Errorf("writing inventory: %w", err)
			}
		}
	}
	// After the write: see Engine.evaluate.
	e.inventory.Add(1)
	return nil
}
