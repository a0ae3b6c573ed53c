"""One module per rule action. Each op takes the working image and the concept's alpha and returns a
new image; none mutates its inputs. ``applier.apply`` orders, composites and protects them."""
